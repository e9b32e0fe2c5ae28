"""Checkpoints without Ray: the server's and the allocator's state survive a save and a
weights_only load exactly, and a checkpoint from another run is refused."""

import io
from dataclasses import replace

import numpy as np
import pytest
import torch

from hetsync.config import TrainConfig
from hetsync.core.partitioning import Allocator
from hetsync.core.server import ParameterServer
from hetsync.core.updates import AgwuRule
from hetsync.core.wire import Contribution
from hetsync.errors import ConfigError
from hetsync.run.checkpoint import (
    CHECKPOINT_FILE,
    Checkpoint,
    CheckpointSchedule,
    identity,
    load_checkpoint,
)
from hetsync.run.metrics import MetricsLog


def _through_disk(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def _server(update="sgd", barrier=False):
    return ParameterServer(weights=np.zeros(6, np.float32), workers=3, bound=2, barrier=barrier,
                           lr=0.1, momentum=0.9, batch_size=8, iterations=100, eval_every=5,
                           update=update, buffers=np.zeros(2, np.float32))


def _push(ps, w, g, base, accuracy):
    # unequal batches (4, 8, 12 samples), as IDPA gives: the momentum buffer's scale moves
    return ps.submit(w, Contribution(ps.consistency.clock(w), base, g, 4 + 4 * w, 1.0, 1, accuracy,
                                     buffers=np.full(2, float(ps.version), np.float32)))


@pytest.mark.parametrize("update", ["sgd", "agwu"])
def test_a_restored_server_continues_exactly_as_the_saved_one(update):
    rng = np.random.default_rng(0)
    pushes = [(w, rng.normal(size=6).astype(np.float32)) for w in [0, 1, 0, 2, 1, 0, 0, 2]]
    a = _server(update)
    for w in range(3):
        a.join(w)
    for w, g in pushes[:5]:
        _push(a, w, g, max(0, a.version - 1), accuracy=0.5 + 0.1 * w)
    b = _server(update)
    b.load_state_dict(_through_disk(a.state_dict()))
    unused = a.budget.granted - a.applied  # tickets the saved workers held come back
    assert b.status() == replace(a.status(), budget_remaining=a.budget.remaining + unused)
    np.testing.assert_array_equal(a.buffers, b.buffers)
    if update == "sgd":  # the restored server's own momentum buffer, not the saved one's
        assert b.rule.buf is not a.rule.buf and a.rule.buf.abs().sum() > 0
        np.testing.assert_array_equal(b.rule.buf, a.rule.buf)
    else:
        assert isinstance(b.rule, AgwuRule) and b.rule.accuracy == a.rule.accuracy
    for w, g in pushes[5:]:
        for ps in (a, b):
            _push(ps, w, g, ps.version - 1, accuracy=0.7)
    np.testing.assert_array_equal(a.weights(), b.weights())  # momentum / accuracies restored
    np.testing.assert_array_equal(a.buffers, b.buffers)


def test_a_restored_server_hands_back_unused_tickets_and_revives_departed_workers():
    a = _server()
    for w in range(3):
        a.join(w)  # each takes a lease of tickets
    _push(a, 0, np.ones(6, np.float32), 0, None)
    a.leave(2)
    b = _server()
    b.load_state_dict(a.state_dict())
    assert b.budget.remaining == 100 - 1  # only the applied iteration is spent
    assert b.consistency.live == {0, 1, 2}
    assert b.consistency.table.clocks == {0: 1, 1: 0, 2: 0}  # worker 2 at the slowest clock


def test_allocator_state_loses_no_sample_of_the_epoch():
    a = Allocator(100, workers=2, batch_size=5, mode="idpa", seed=3, probe_iterations=2,
                  chunk_iterations=2)
    first = a.next_chunk(0)  # 10 samples, 5 reported consumed below
    a.next_chunk(1)  # 10 samples, none reported: all come back
    a.report(0, samples=5, seconds=0.01)
    a.report(1, samples=0, seconds=0.0)
    consumed = set(first.indices[:5].tolist())
    b = Allocator(100, workers=2, batch_size=5, mode="idpa", seed=3)
    b.load_state_dict(_through_disk(a.state_dict()))
    handed = []
    while b.epoch == 0:
        chunk = b.next_chunk(len(handed) % 2)
        if chunk.epoch == 0:
            handed.extend(chunk.indices.tolist())
    assert len(handed) == len(set(handed)) and set(handed) == set(range(100)) - consumed
    # the next epoch's order is the one the saved allocator would have drawn
    np.testing.assert_array_equal(b.pool, a.rng.permutation(100))


def _checkpoint(cfg, num_params=10):
    return Checkpoint(identity=identity(cfg), num_params=num_params,
                      server={"applied": 40}, allocator={}, elapsed_s=1.0, metrics_lines=0,
                      best_val_accuracy=None, time_to_target_s=None)


def test_a_checkpoint_from_other_settings_or_another_model_is_refused(tmp_path):
    saved = TrainConfig.from_flat(dataset="synthetic", workers=4, lr=0.02, out=str(tmp_path))
    _checkpoint(saved).save(tmp_path)
    assert load_checkpoint(tmp_path, saved, 10).iterations == 40
    other = TrainConfig.from_flat(dataset="synthetic", workers=2, lr=0.05, out=str(tmp_path))
    with pytest.raises(ConfigError, match="other settings: workers 4 there, 2 here; lr 0.02 "
                                          "there, 0.05 here"):
        load_checkpoint(tmp_path, other, 10)
    with pytest.raises(ConfigError, match="holds 10 parameters; this model has 11"):
        load_checkpoint(tmp_path, saved, 11)


def test_contents_read_before_are_checked_as_the_file_would_be(tmp_path):
    """A resume without config.json reads its checkpoint before the data (so that a corrupt
    one is the error reported) and hands the contents on instead of reading them again."""
    from hetsync.run.checkpoint import load_weights

    saved = TrainConfig.from_flat(dataset="synthetic", workers=4, lr=0.02, out=str(tmp_path))
    _checkpoint(saved).save(tmp_path)
    read = load_weights(tmp_path / CHECKPOINT_FILE)
    assert load_checkpoint(tmp_path, saved, 10, read).iterations == 40
    with pytest.raises(ConfigError, match="holds 10 parameters; this model has 11"):
        load_checkpoint(tmp_path, saved, 11, read)


def test_a_corrupt_or_foreign_checkpoint_is_refused(tmp_path):
    cfg = TrainConfig.from_flat(dataset="synthetic", out=str(tmp_path))
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(Exception, match="is corrupt or not a weights file"):
        load_checkpoint(tmp_path, cfg, 10)
    torch.save({"weights": torch.zeros(3)}, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(ConfigError, match="is not a hetsync checkpoint"):
        load_checkpoint(tmp_path, cfg, 10)


def test_a_pickled_object_in_a_checkpoint_is_never_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    cfg = TrainConfig.from_flat(dataset="synthetic", out=str(tmp_path))
    torch.save({"x": Evil()}, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(Exception, match="is corrupt or not a weights file: Unsupported global: "
                                        "GLOBAL print was not an allowed global") as refused:
        load_checkpoint(tmp_path, cfg, 10)
    assert "weights_only" not in str(refused.value)  # torch's advice to unpickle it anyway


def test_a_resumed_metrics_log_keeps_the_checkpointed_records(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"kind": "eval", "iterations": 10}\n{"kind": "checkpoint", "iterations": 10}'
                    '\n{"kind": "eval", "iterations": 20}\n{"kind": "ev')  # cut by a kill -9
    log = MetricsLog(path, keep=2)
    log.write("membership", event="resumed")
    log.close()
    assert [r["iterations"] for r in log.dropped] == [20]
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and '"resumed"' in lines[2] and len(log.records) == 3


def test_checkpoints_fall_due_every_interval_counted_from_a_resume():
    s = CheckpointSchedule(100, start=250)
    assert not s.due(299) and s.due(300)
    s.saved(312)
    assert s.next == 400 and not CheckpointSchedule(0).due(10**6)


def test_snapshot_files_are_the_runs_only_and_a_users_snapshots_folder_is_refused(tmp_path):
    """A run touches only plain files of snapshot names in its snapshots/ folder: one of the
    user's (other names, or a link) makes --out foreign, and nothing in it is removed."""
    from hetsync.core.wire import Snapshot
    from hetsync.run.checkpoint import SNAPSHOT_DIR, forget_snapshots, keep_snapshots, prepare_out

    out = tmp_path / "run"
    cfg = TrainConfig.from_flat(dataset="synthetic", out=str(out))
    snaps = [Snapshot(np.full(3, float(i), np.float32), None, 100 * i, 6400 * i, i, 10.0 + i)
             for i in (1, 2)]
    out.mkdir()
    kept = keep_snapshots(snaps, 10.0, out)
    assert [k["file"] for k in kept] == ["000000000100.pt", "000000000200.pt"]
    forget_snapshots(out, kept[1:])
    assert sorted(p.name for p in (out / SNAPSHOT_DIR).iterdir()) == ["000000000200.pt"]
    assert prepare_out(cfg, 3) is None  # a fresh run here: the old snapshot goes
    assert not (out / SNAPSHOT_DIR).exists()

    user = tmp_path / "user"
    (user / SNAPSHOT_DIR).mkdir(parents=True)
    (user / SNAPSHOT_DIR / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"holds files that are not a run's \(snapshots\)"):
        prepare_out(TrainConfig.from_flat(dataset="synthetic", out=str(user)), 3)
    forget_snapshots(user, [])
    assert (user / SNAPSHOT_DIR / "holiday.jpg").exists()

    linked = tmp_path / "linked"
    linked.mkdir()
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "000000000100.pt").write_bytes(b"x")
    (linked / SNAPSHOT_DIR).symlink_to(tmp_path / "photos")
    with pytest.raises(ConfigError, match="not a run's"):
        prepare_out(TrainConfig.from_flat(dataset="synthetic", out=str(linked)), 3)
    forget_snapshots(linked, [])
    assert (tmp_path / "photos" / "000000000100.pt").exists()


def test_a_missing_snapshot_file_costs_its_point_of_the_curve_not_the_resume(tmp_path):
    from hetsync.core.wire import Snapshot
    from hetsync.run.checkpoint import SNAPSHOT_DIR, keep_snapshots, restore_snapshots

    snaps = [Snapshot(np.full(3, float(i), np.float32), None, 100 * i, 6400 * i, i, 10.0 + i)
             for i in (1, 2)]
    kept = keep_snapshots(snaps, 10.0, tmp_path)
    (tmp_path / SNAPSHOT_DIR / kept[0]["file"]).unlink()
    with pytest.warns(UserWarning, match="snapshot at iteration 100 is left unevaluated"):
        back = restore_snapshots(kept, 50.0, tmp_path)
    assert [(s.iterations, s.time, s.weights.tolist()) for s in back] == [(200, 52.0,
                                                                          [2.0, 2.0, 2.0])]

"""TensorBoard scalars: written through the writer the driver holds, read back with
TensorBoard's own reader; the missing package is a one-line error that names the extra."""

import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from hetsync.cli import main
from hetsync.core.wire import Status
from hetsync.errors import ConfigError
from hetsync.run.tensorboard import NullWriter, RunScalars, check_tensorboard, open_writer

from .test_train import _drive


def _read(folder) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})  # 0: keep them all
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]}


def _status(iterations, samples, clocks, staleness, lag, loss=1.0):
    return Status(iterations=iterations, samples=samples, updates=iterations, loss=loss,
                  max_staleness_observed=max(int(k) for k in staleness),
                  max_version_lag=max(int(k) for k in lag), staleness_histogram=staleness,
                  version_lag_histogram=lag, clocks=clocks)


def test_the_figures_of_a_scripted_run_read_back_with_their_values(tmp_path):
    scalars = RunScalars(open_writer(str(tmp_path)), workers=2, batch_size=32, every_s=1.0)
    scalars.started(0, t0=100.0)
    scalars.status(_status(0, 0, {0: 0, 1: 0}, {"0": 0}, {"0": 0}, loss=None), now=100.0)
    scalars.status(_status(5, 160, {0: 1, 1: 4}, {"0": 1}, {"0": 1}), now=100.5)  # too soon
    scalars.status(_status(20, 640, {0: 5, 1: 15}, {"0": 10, "2": 10}, {"1": 20}), now=102.0)
    scalars.record({"kind": "allocation", "iterations": 20, "wall_time_s": 2.1,
                    "batches": {"0": 16, "1": 48}, "rates": {"0": 100.0, "1": 300.0}})
    scalars.record({"kind": "checkpoint", "iterations": 20, "wall_time_s": 2.15})  # no scalar
    scalars.record({"kind": "eval", "iterations": 20, "wall_time_s": 2.2, "val_accuracy": 0.5,
                    "val_loss": 1.5})
    scalars.record({"kind": "final", "iterations": 20, "wall_time_s": 2.3, "val_accuracy": 0.5,
                    "val_loss": 1.5})  # the same weights as the last snapshot: one point
    scalars.summary({"iterations": 20, "start_time": 100.0, "wall_time_s": 2.4,
                     "throughput_samples_per_s": 320.0, "wait_fraction": 0.25, "per_worker": [
                         {"worker": 0, "wait_s": 1.0, "total_s": 2.0},
                         {"worker": 1, "wait_s": 0.0, "total_s": 2.0}]})
    scalars.close()
    got = _read(tmp_path)
    assert got["train/loss"] == [(20, 1.0)]  # no loss before the first push
    assert got["train/samples_per_s"] == [(20, 320.0)]  # 640 samples in 2 s
    assert got["consistency/staleness_mean"] == [(20, 1.0)]  # ten at 0, ten at 2
    assert got["consistency/version_lag_mean"] == [(20, 1.0)]
    assert got["consistency/max_staleness"] == [(0, 0.0), (20, 2.0)]
    # 5 and 15 iterations of 32 samples in 2 s
    assert got["workers/samples_per_s/w0"] == [(20, 80.0)]
    assert got["workers/samples_per_s/w1"] == [(20, 240.0)]
    assert got["workers/batch_share/w0"] == [(0, 0.5), (20, 0.25)]
    assert got["workers/batch_share/w1"] == [(0, 0.5), (20, 0.75)]
    assert got["workers/measured_rate/w1"] == [(20, 300.0)]
    assert got["eval/val_accuracy"] == [(20, 0.5)] and got["eval/val_loss"] == [(20, 1.5)]
    assert got["run/wait_fraction"] == [(20, 0.25)]
    assert got["workers/wait_fraction/w0"] == [(20, 0.5)]
    events = EventAccumulator(str(tmp_path))
    events.Reload()  # wall times on the run's clock: a deferred evaluation keeps its own
    assert [e.wall_time for e in events.Scalars("eval/val_accuracy")] == [pytest.approx(102.2)]


def test_a_fake_run_through_the_driver_writes_every_figure(tmp_path):
    writer = open_writer(str(tmp_path / "tb"))
    summary, _, driver, _, log = _drive(tmp_path, writer=writer)
    driver.scalars.close()
    got = _read(tmp_path / "tb")
    # (The fake pool runs every worker to its end before the driver's first poll, so no push
    # falls between two polls: the interval means of staleness and lag have nothing to show.)
    assert {"train/loss", "train/samples_per_s", "eval/val_accuracy", "eval/val_loss",
            "consistency/max_staleness", "consistency/max_version_lag",
            "run/throughput_samples_per_s", "run/wait_fraction"} <= set(got)
    for w in range(3):
        assert {f"workers/batch_share/w{w}", f"workers/samples_per_s/w{w}",
                f"workers/wait_fraction/w{w}"} <= set(got)
        assert got[f"workers/batch_share/w{w}"][0] == (0, pytest.approx(1 / 3))
    evals = [r for r in log.records if r["kind"] == "eval"]
    assert got["eval/val_accuracy"] == [(r["iterations"], pytest.approx(r["val_accuracy"]))
                                        for r in evals]
    assert all(0 <= a <= 1 for _, a in got["eval/val_accuracy"])
    assert all(v > 0 for _, v in got["train/loss"])
    assert got["consistency/max_staleness"][-1] == (40, summary["max_staleness_observed"])
    assert got["run/wait_fraction"] == [(40, pytest.approx(summary["wait_fraction"]))]


def test_without_the_flag_nothing_is_written(tmp_path):
    assert isinstance(open_writer(None), NullWriter)
    _drive(tmp_path)  # the driver's default writer
    assert not list(tmp_path.rglob("events.out.tfevents.*"))


def test_a_missing_tensorboard_package_is_one_line_naming_the_extra(tmp_path, monkeypatch,
                                                                     capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard", raising=False)
    assert main(["train", "--quiet", "--dataset", "synthetic", "--tensorboard",
                 str(tmp_path / "tb")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["hetsync: error: --tensorboard needs the tensorboard package: "
                   "pip install 'hetsync[tensorboard]'"]
    assert not (tmp_path / "tb").exists()


def test_a_folder_with_another_runs_events_is_refused_unless_overwritten(tmp_path):
    old = tmp_path / "events.out.tfevents.1.host"
    old.write_bytes(b"x")
    with pytest.raises(ConfigError, match="holds the events of another run"):
        check_tensorboard(str(tmp_path), overwrite=False, resuming=False)
    check_tensorboard(str(tmp_path), overwrite=False, resuming=True)  # continues its own
    assert old.exists()
    check_tensorboard(str(tmp_path), overwrite=True, resuming=False)
    assert not old.exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        check_tensorboard(str(tmp_path / "file"), overwrite=False, resuming=False)


def test_a_tensorboard_folder_inside_the_run_folder_is_the_runs_own(tmp_path):
    from hetsync.config import TrainConfig
    from hetsync.run.checkpoint import prepare_out

    run = tmp_path / "run"
    (run / "tb").mkdir(parents=True)
    (run / "tb" / "events.out.tfevents.1.host").write_bytes(b"x")
    (run / "summary.json").write_text("{}")
    cfg = TrainConfig.from_flat(dataset="synthetic", out=str(run), overwrite=True,
                                tensorboard=str(run / "tb"))
    check_tensorboard(cfg.output.tensorboard, overwrite=True, resuming=False)
    assert prepare_out(cfg, 10) is None  # not "holds files that are not a run's (tb)"
    assert not (run / "summary.json").exists() and not list((run / "tb").iterdir())


def test_a_resumed_run_hides_the_saved_runs_points_after_its_checkpoint(tmp_path):
    import time

    first = open_writer(str(tmp_path))
    for step in (0, 10, 20, 30):  # the saved run got to 30, its checkpoint at 20
        first.add_scalar("train/loss", 1.0, step, 100.0 + step)
    first.close()
    time.sleep(1.1)  # a new events file: their names hold the second they were made
    check_tensorboard(str(tmp_path), overwrite=False, resuming=True)
    second = open_writer(str(tmp_path), resume_step=20)
    for step in (20, 30, 40):
        second.add_scalar("train/loss", 2.0, step, 200.0 + step)
    second.close()
    assert _read(tmp_path)["train/loss"] == [(0, 1.0), (10, 1.0), (20, 2.0), (30, 2.0),
                                             (40, 2.0)]

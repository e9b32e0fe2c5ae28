"""A sharded parameter server: ranges, merged states and replies, and the consistency rules
across shards (every push reaches every shard, in any order)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hetsync.core.consistency import StalenessGate
from hetsync.core.server import ParameterServer
from hetsync.core.sharding import (
    SnapshotZipper,
    merge_replies,
    merge_states,
    shard_ranges,
    split_state,
)
from hetsync.core.wire import Contribution, Reply, Snapshot
from hetsync.errors import ConfigError


def _servers(weights, shards, workers, barrier, bound, momentum=0.5, compensation=0.0):
    return [ParameterServer(weights=weights[lo:hi], workers=workers, bound=bound,
                            barrier=barrier, lr=0.1, momentum=momentum, batch_size=8,
                            iterations=10**6, eval_every=10**6,
                            delay_compensation=compensation)
            for lo, hi in shard_ranges(len(weights), shards)]


def test_ranges_cover_the_vector_contiguously_and_differ_by_at_most_one():
    for params, shards in [(10, 1), (10, 3), (61_706, 4), (7, 7)]:
        ranges = shard_ranges(params, shards)
        assert ranges[0][0] == 0 and ranges[-1][1] == params
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
        sizes = [hi - lo for lo, hi in ranges]
        assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ConfigError, match="--server-shards 5"):
        shard_ranges(4, 5)


def test_bsp_on_shards_equals_one_server_step_for_step_whatever_the_arrival_order():
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal(101).astype(np.float32)
    one = _servers(w0, 1, 3, barrier=True, bound=0)[0]
    shards = _servers(w0, 3, 3, barrier=True, bound=0)
    ranges = shard_ranges(101, 3)
    for ps in [one, *shards]:
        for w in range(3):
            ps.join(w)
    for clock in range(6):
        grads = {w: rng.standard_normal(101).astype(np.float32) for w in range(3)}
        samples = {w: int(rng.integers(1, 9)) for w in range(3)}
        for w in rng.permutation(3):
            one.submit(int(w), Contribution(clock, clock, grads[w], samples[w], 1.0))
        for k, (ps, (lo, hi)) in enumerate(zip(shards, ranges, strict=True)):
            for w in rng.permutation(3):  # each shard hears the workers in its own order
                ps.submit(int(w), Contribution(clock, clock, grads[w][lo:hi], samples[w], 1.0))
            assert ps.version == one.version == clock + 1, k
        merged = np.concatenate([ps.weights() for ps in shards])
        assert np.array_equal(merged, one.weights())  # bit for bit


def test_a_merged_state_is_the_unsharded_state_and_splits_back():
    """With delay compensation too: its mean square is one value per parameter, and stale
    pushes (worker 1 pulls once) are corrected range by range as on one server."""
    rng = np.random.default_rng(1)
    w0 = rng.standard_normal(20).astype(np.float32)
    one = _servers(w0, 1, 2, barrier=False, bound=None, compensation=4.0)[0]
    shards = _servers(w0, 2, 2, barrier=False, bound=None, compensation=4.0)
    ranges = shard_ranges(20, 2)
    for ps in [one, *shards]:
        for worker in (0, 1):
            ps.join(worker)
    for clock in range(3):
        for worker in (0, 1):
            g = rng.standard_normal(20).astype(np.float32)
            base = 2 * clock if worker == 0 else 0  # worker 1 on what it joined with: stale
            one.submit(worker, Contribution(clock, base, g, 8, 1.0))
            for ps, (lo, hi) in zip(shards, ranges, strict=True):
                ps.submit(worker, Contribution(clock, base, g[lo:hi], 8, 1.0))
        for ps in [one, *shards]:
            ps.reply(0)  # worker 0 pulls after each of its pushes
    merged = merge_states([ps.state_dict() for ps in shards])
    expected = one.state_dict()
    np.testing.assert_allclose(merged["weights"], expected["weights"], rtol=1e-6)
    assert torch.equal(merged["rule"]["momentum_buffer"], expected["rule"]["momentum_buffer"])
    torch.testing.assert_close(merged["compensation"]["mean_square"],
                               expected["compensation"]["mean_square"])
    assert merged["version"] == expected["version"] == 6
    # and a run resumes on another number of shards from it
    again = _servers(np.zeros(20, np.float32), 2, 2, barrier=False, bound=None,
                     compensation=4.0)
    for ps, part in zip(again, split_state(expected, ranges), strict=True):
        ps.load_state_dict(part)
    assert np.array_equal(np.concatenate([ps.weights() for ps in again]), one.weights())
    assert torch.equal(torch.cat([ps.compensation.mean_square for ps in again]),
                       one.compensation.mean_square)


def test_merged_replies_take_every_range_and_the_smallest_min_clock():
    a = Reply(np.ones(2, np.float32), None, 5, 3, 2, 7, 0.1, 0.0)
    b = Reply(np.full(3, 2.0, np.float32), None, 4, 1, 0, 7, 0.1, 0.5)
    r = merge_replies([a, b])
    assert r.weights.tolist() == [1, 1, 2, 2, 2]
    assert (r.version, r.min_clock, r.granted, r.waited_s) == (5, 1, 2, 0.5)
    landed = np.empty(5, np.float32)  # a client that copied the ranges itself
    assert merge_replies([a, b], landed).weights is landed
    assert merge_replies([a], landed).weights is landed
    assert merge_replies([a]) is a


def test_snapshots_of_the_shards_pair_up_in_order():
    def snap(value, it):
        return Snapshot(np.full(2, value, np.float32), None, it, it, it, 0.0)

    zipper = SnapshotZipper(2)
    assert zipper.add([[snap(0, 10), snap(0, 20)], [snap(1, 10)]])[0].weights.tolist() == [
        0, 0, 1, 1]
    later = zipper.add([[], [snap(1, 20)]])
    assert [s.iterations for s in later] == [20]


@st.composite
def sharded_schedules(draw):
    workers = draw(st.integers(1, 4))
    shards = draw(st.integers(2, 3))
    bound = draw(st.integers(0, 3))
    events = draw(st.lists(st.tuples(st.integers(0, workers - 1), st.integers(0, shards - 1),
                                     st.sampled_from(["start", "finish", "deliver"])),
                           max_size=250))
    return workers, shards, bound, events


@settings(max_examples=200, deadline=None)
@given(sharded_schedules())
def test_the_ssp_bound_holds_on_every_shard_under_any_interleaving(schedule):
    """Each push travels to each shard on its own and arrives in any order; a worker goes on
    on the smallest min_clock of its shards' replies (`merge_replies`), as the gloo client
    does. Every shard's recorded staleness stays within the bound, and some worker can
    always make progress."""
    workers, shards, bound, events = schedule
    servers = _servers(np.zeros(2 * shards, np.float32), shards, workers, barrier=False,
                       bound=bound, momentum=0.0)
    gate = StalenessGate(bound)
    clock = [0] * workers
    known_min = [min(ps.join(w).min_clock for ps in servers) for w in range(workers)]
    computing = [False] * workers
    in_flight: list[dict[int, bool]] = [{} for _ in range(workers)]  # shard -> delivered
    replies: list[list[Reply]] = [[] for _ in range(workers)]
    for w, k, action in events:
        if action == "start" and not computing[w] and not in_flight[w]:
            if not gate.decide(clock[w], known_min[w]).proceed:  # ask every shard
                asks = [ps.wait_until_allowed(w, clock[w]) for ps in servers]
                if all(a.ready() for a in asks):
                    known_min[w] = merge_replies([a.reply() for a in asks]).min_clock
            if gate.decide(clock[w], known_min[w]).proceed:
                assert all(ps.consistency.may_start(clock[w]).proceed for ps in servers)
                computing[w] = True
        elif action == "finish" and computing[w]:
            computing[w] = False
            in_flight[w] = {s: False for s in range(shards)}
        elif action == "deliver" and in_flight[w] and not in_flight[w][k]:
            push = Contribution(clock[w], 0, np.zeros(2, np.float32), 8, 1.0)
            replies[w].append(servers[k].push(w, [push]).reply())
            in_flight[w][k] = True
            if all(in_flight[w].values()):  # every shard answered: the push is done
                known_min[w] = merge_replies(replies[w]).min_clock
                in_flight[w], replies[w] = {}, []
                clock[w] += 1
        for ps in servers:
            assert ps.stats.max_staleness <= bound
    idle = [w for w in range(workers) if not computing[w] and not in_flight[w]]
    if idle and not any(computing) and not any(in_flight):
        assert any(all(ps.consistency.may_start(clock[w]).proceed for ps in servers)
                   for w in idle)

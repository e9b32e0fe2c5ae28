"""IDPA: proportional batches, incremental rebalancing, and no lost or duplicated samples."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hetsync.core.partitioning import Allocator, ShardSampler, proportional_batches


def test_proportional_batches_sum_exactly_and_follow_speed():
    b = proportional_batches(256, [4.0, 4.0, 2.0, 1.0])
    assert sum(b) == 256 and abs(b[0] - b[1]) <= 1 and b[1] > b[2] > b[3] >= 1
    assert abs(b[0] / b[3] - 4) < 0.2
    assert proportional_batches(4, [100.0, 1.0, 1.0, 1.0]) == [1, 1, 1, 1]
    # the slowest worker's share is not rounded up at the others' cost (it was 24: 3.1% over)
    assert proportional_batches(256, [4.0, 4.0, 2.0, 1.0]) == [94, 93, 46, 23]
    for bad in ([1.0, 0.0], [1.0, -1.0], [float("inf"), 1.0], [float("nan"), 1.0]):
        with pytest.raises(ValueError, match="finite weights > 0"):
            proportional_batches(8, bad)


def _compositions(total: int, parts: int):
    if parts == 1:
        yield (total,)
        return
    for first in range(1, total - parts + 2):
        for rest in _compositions(total - first, parts - 1):
            yield (first, *rest)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.01, 100.0), min_size=1, max_size=4), st.integers(0, 8))
def test_proportional_batches_make_the_longest_clock_as_short_as_integers_allow(weights, extra):
    """Against every split of `total` into positive integers: none has a shorter longest
    `batch / weight`, which under SSP and BSP is the length of a clock."""
    total = len(weights) + extra
    b = proportional_batches(total, weights)
    assert sum(b) == total and min(b) >= 1
    longest = max(x / w for x, w in zip(b, weights, strict=True))
    best = min(max(x / w for x, w in zip(c, weights, strict=True))
               for c in _compositions(total, len(weights)))
    assert longest <= best * (1 + 1e-9)


def test_probe_is_equal_then_shares_follow_measured_speed():
    a = Allocator(10_000, workers=4, batch_size=64, mode="idpa", seed=0)
    assert [a.next_chunk(w).batch_size for w in range(4)] == [64] * 4  # the probe
    for w, rate in enumerate([400.0, 400.0, 200.0, 100.0]):
        a.report(w, samples=64 * 8, seconds=64 * 8 / rate)
    batches = [a.next_chunk(w).batch_size for w in range(4)]
    assert sum(batches) == 256 and batches[0] > 2.5 * batches[3]
    assert len(a.changes) == 1
    a.report(3, samples=100, seconds=100 / 100.0)  # unchanged speed: no churn
    assert len(a.changes) == 1
    for _ in range(4):  # worker 3 slows down 4x (interference): its share shrinks
        a.report(3, samples=100, seconds=100 / 25.0)
    assert len(a.changes) >= 2 and a.batches[3] < batches[3] / 2


def test_chunks_stay_probe_sized_until_every_worker_is_measured():
    """A chunk's batch holds until the next chunk: the slowest worker must not be handed a
    full chunk at the probe's equal batch while the others are still being measured."""
    a = Allocator(10_000, workers=3, batch_size=10, mode="idpa", seed=0, chunk_iterations=8,
                  probe_iterations=2)
    a.report(0, samples=20, seconds=0.1)
    assert len(a.next_chunk(0).indices) == 2 * 10  # worker 0 measured, 1 and 2 not yet
    a.report(1, samples=20, seconds=0.1)
    a.report(2, samples=20, seconds=0.4)  # now all are, and the shares follow
    chunk = a.next_chunk(2)
    assert chunk.batch_size < 10 and len(chunk.indices) == 8 * chunk.batch_size
    u = Allocator(10_000, workers=3, batch_size=10, mode="uniform", seed=0,
                  chunk_iterations=8, probe_iterations=2)
    u.report(0, samples=20, seconds=0.1)  # uniform: nothing to wait for
    assert len(u.next_chunk(0).indices) == 8 * 10


def test_samples_consumed_untimed_count_as_consumed_not_as_speed():
    a = Allocator(10_000, workers=1, batch_size=10, mode="idpa", seed=0, probe_iterations=2)
    first = a.next_chunk(0)
    a.report(0, samples=20, seconds=0.5, timed=10)  # the first 10 were not timed
    assert a.rates[0] == 20.0 and not a.outstanding[0]  # 10 / 0.5; the chunk is used up
    a.next_chunk(0)
    a.report(0, samples=10, seconds=0.3, timed=0)  # consumed, none timed: no new rate
    assert a.rates[0] == 20.0 and [len(i) for i, _ in a.outstanding[0]] == [80 - 10]
    assert len(first.indices) == 20


def test_a_worker_slightly_over_its_share_is_rebalanced():
    """Every clock waits for the slowest worker, so a small worker 12% over its share costs
    12% of the throughput: the allocator must act on that, although the batch moves by
    only a few samples."""
    a = Allocator(10_000, workers=4, batch_size=64, mode="idpa", seed=0)
    for w, rate in enumerate([400.0, 400.0, 200.0, 100.0]):
        a.report(w, samples=512, seconds=512 / rate)
    assert a.imbalance() < 0.05
    before = dict(a.batches)
    for _ in range(6):  # worker 3 turns out 12% slower than first measured
        a.report(3, samples=100, seconds=100 / 88.0)
    assert a.batches[3] < before[3] and sum(a.batches.values()) == 256
    assert a.imbalance(before) > 0.1 and a.imbalance() < a.imbalance(before) - 0.05


def test_uniform_mode_never_rebalances():
    a = Allocator(1000, workers=2, batch_size=16, mode="uniform", seed=0)
    a.report(0, 100, 0.1)
    a.report(1, 100, 10.0)
    assert a.batches == {0: 16, 1: 16} and not a.changes


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.floats(1.0, 1000.0)), min_size=1, max_size=200),
       st.integers(0, 2))
def test_each_epoch_hands_out_every_sample_exactly_once(events, leaver):
    """Workers draw chunks at random speeds while shares change and one worker leaves
    mid-way, handing back what it did not consume: within each completed epoch every sample
    is consumed exactly once."""
    n = 500
    a = Allocator(n, workers=3, batch_size=8, mode="idpa", seed=1, chunk_iterations=2,
                  probe_iterations=1)
    consumed: dict[int, list] = {}
    held = {w: [] for w in range(3)}
    for step, (w, rate) in enumerate(events):
        if w == leaver and step == len(events) // 2 and w in a.members.live:
            for indices, epoch in held[w]:
                a.give_back(w, indices, epoch)
            a.members.leave(w)
            held[w] = []
            continue
        if w not in a.members.live:
            continue
        a.report(w, 16, 16 / rate)
        chunk = a.next_chunk(w)
        # consume half now, hold the rest (unconsumed, as a real worker's queue would)
        half = len(chunk.indices) // 2
        consumed.setdefault(chunk.epoch, []).extend(chunk.indices[:half].tolist())
        held[w].append((chunk.indices[half:], chunk.epoch))
    for w in a.members.live:  # the end: everyone consumes what it holds
        for indices, epoch in held[w]:
            consumed.setdefault(epoch, []).extend(indices.tolist())
    for epoch, items in consumed.items():
        assert len(items) == len(set(items)), f"duplicate within epoch {epoch}"
        if epoch < a.epoch:
            assert sorted(items) == list(range(n)), f"epoch {epoch} lost samples"


def test_a_lost_workers_unreported_samples_return_to_the_pool():
    a = Allocator(200, workers=2, batch_size=10, mode="uniform", seed=0, probe_iterations=2,
                  chunk_iterations=2)
    first = a.next_chunk(1)  # 20 samples
    a.report(1, samples=10, seconds=0.1)  # 10 of them consumed and reported
    second = a.next_chunk(1)
    a.members.leave(1)  # the server's membership, which the allocator reads
    a.reclaim(1)
    handed = []
    while a.epoch == 0:
        chunk = a.next_chunk(0)
        if chunk.epoch == 0:
            handed.extend(chunk.indices.tolist())
    expected = set(range(200)) - set(first.indices[:10].tolist())
    assert set(handed) == expected and len(handed) == len(expected)
    assert len(second.indices) == 20


def test_the_live_set_is_shared_and_a_departure_reshares_the_global_batch():
    a = Allocator(1000, workers=3, batch_size=10, mode="idpa", seed=0)
    for w, rate in enumerate([300.0, 200.0, 100.0]):
        a.report(w, samples=80, seconds=80 / rate)
    assert sum(a.batches.values()) == 30
    a.members.leave(2)
    assert a.next_chunk(0).batch_size == 18 and a.batches[1] == 12  # 30 split 3:2
    a.members.join(2)
    assert a.next_chunk(2).batch_size == 5  # back, with its last measured rate


def test_shard_sampler_covers_its_shard_each_epoch():
    s = ShardSampler(20, rank=1, workers=4, batch=5, seed=0)
    assert sorted(s.next().tolist()) == [1, 5, 9, 13, 17]


def test_proportional_shards_split_the_data_by_batch_and_cover_it_once():
    shards = [ShardSampler(100, r, 3, b, seed=0, batches=[50, 30, 20]).shard for r, b in
              enumerate([50, 30, 20])]
    assert [len(s) for s in shards] == [50, 30, 20]
    assert sorted(np.concatenate(shards).tolist()) == list(range(100))

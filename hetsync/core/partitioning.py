"""How the training data and the per-iteration batch are divided among workers.

Incremental data partitioning and allocation (IDPA, docs/allocation.md): the data of an epoch
sits in one pool and is handed out in chunks on demand. Under `idpa` each worker's batch
(and so its share of every chunk and of the epoch) is proportional to its measured speed, so
that all workers reach each clock at about the same time; under `uniform` every batch is
`batch_size`. Since the pool hands out every index of an epoch exactly once, changing the
shares (rebalancing) can neither lose nor duplicate a sample within an epoch, and data that a
departing worker did not consume goes back to the pool for the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hetsync.core.consistency import Membership

ALLOCATIONS = ("uniform", "idpa")


@dataclass
class Chunk:
    """Sample indices handed to one worker, to consume in order at `batch_size`; `epoch` says
    whether unconsumed ones may still go back to the pool."""

    indices: np.ndarray  # the samples to consume, in order
    batch_size: int  # the batch size to consume them with, from now on
    epoch: int


def proportional_batches(total: int, weights: list[float]) -> list[int]:
    """Integers >= 1 that sum to exactly `total` (so the global batch per clock, and with it
    the learning-rate semantics, never changes) and make the longest `batch / weight` as
    short as integers allow: with `weights` the workers' rates, every clock waits for the
    slowest worker, so that maximum is the clock's length. A largest-remainder split of
    `total - n` plus one sample each overloads small shares: it gave rates 4,4,2,1 (the
    emulated speeds 1,1,2,4) of 256 the batches 93,92,47,24, the slowest worker 3.1% over its
    share and every clock 3.1% longer; this split gives 94,93,46,23 (1.0%)."""
    n = len(weights)
    if total < n:
        raise ValueError(f"a global batch of {total} cannot give {n} workers one sample each")
    w = np.asarray(weights, dtype=float)
    if not (np.isfinite(w).all() and (w > 0).all()):
        raise ValueError(f"batch shares need finite weights > 0 (got {list(weights)})")
    out = np.maximum(1, np.floor(total * w / w.sum())).astype(int)
    while out.sum() > total:  # the floor of one sample each overshot: trim the longest
        i = int(np.argmax(np.where(out > 1, out / w, -np.inf)))
        out[i] -= 1
    while out.sum() < total:  # greedy: each sample to whoever it lengthens least
        out[int(np.argmin((out + 1) / w))] += 1
    return [int(b) for b in out]


class Allocator:
    """Hands out the data of each epoch in chunks and sizes each worker's batch. It reads who
    is live from `members`, which it shares with the clock table where both run in the
    server's process, and re-splits the global batch whenever that set changes."""

    def __init__(self, n_samples: int, workers: int, batch_size: int, mode: str, seed: int,
                 members: Membership | None = None, chunk_iterations: int = 8,
                 probe_iterations: int = 2, smoothing: float = 0.5,
                 rebalance_threshold: float = 0.05):
        if mode not in ALLOCATIONS:
            raise ValueError(f"unknown allocation {mode!r}")
        self.n_samples = n_samples
        self.workers = workers
        self.global_batch = workers * batch_size
        self.mode = mode
        self.rng = np.random.default_rng(seed)
        self.chunk_iterations = chunk_iterations
        self.probe_iterations = probe_iterations
        self.smoothing = smoothing
        self.threshold = rebalance_threshold
        self.members = members if members is not None else Membership(workers)
        self._shared_among = frozenset(self.members.live)
        self.rates: dict[int, float] = {}  # samples/s, exponentially smoothed
        self.batches = {w: batch_size for w in range(workers)}
        self.epoch = 0
        self.pool = self.rng.permutation(n_samples)
        self.pos = 0
        self.changes: list[dict] = []  # every rebalancing, for metrics.jsonl
        # Per worker, what it was handed and has not reported consumed, oldest first: what
        # goes back to the pool if the worker's process dies.
        self.outstanding: dict[int, list[list]] = {w: [] for w in range(workers)}

    # ------------------------------------------------------------------ measurements
    def report(self, worker: int, samples: int, seconds: float, timed: int | None = None) -> None:
        """A worker consumed `samples` samples since its last report and computed `timed` of
        them (default: all) in `seconds`."""
        self._consumed(worker, samples)
        timed = samples if timed is None else timed
        if timed <= 0 or seconds <= 0:
            return
        rate = timed / seconds
        old = self.rates.get(worker)
        self.rates[worker] = rate if old is None else (
            self.smoothing * rate + (1 - self.smoothing) * old)
        if self.mode == "idpa":
            self._maybe_rebalance()

    def _live(self) -> list[int]:
        """The live workers, re-splitting the global batch among them if they changed."""
        if self._shared_among != self.members.live:
            self._shared_among = frozenset(self.members.live)
            self._reshare()
        return sorted(self.members.live)

    def _measured(self, workers: list[int]) -> bool:
        """Whether every one of `workers` has a measured rate (the probe is over for them)."""
        return all(w in self.rates for w in workers)

    def imbalance(self, batches: dict[int, int] | None = None) -> float:
        """How much longer a clock takes with `batches` (default: the current ones) than with
        every live worker's batch exactly proportional to its measured rate: the slowest
        worker's predicted time per batch over the balanced time, minus 1. Under SSP and BSP
        every worker waits for the slowest, so this is the share of throughput lost. Needs a
        measured rate for every live worker (after the probe)."""
        live = sorted(self.members.live)
        batches = self.batches if batches is None else batches
        balanced = self.global_batch / sum(self.rates[w] for w in live)
        return max(batches[w] / self.rates[w] for w in live) / balanced - 1

    def _maybe_rebalance(self) -> None:
        live = self._live()
        if not live or not self._measured(live):
            return  # still probing: every live worker must have been measured
        target = dict(zip(live, proportional_batches(self.global_batch,
                                                     [self.rates[w] for w in live]),
                          strict=True))
        # Adopt when it gains more than the threshold. A per-worker criterion (any batch
        # moving by more than the threshold) let a slow worker with a small batch stay 11%
        # over its share, which made every clock 11% longer under SSP.
        if self.imbalance() - self.imbalance(target) > self.threshold:
            self.batches.update(target)
            self.changes.append({"batches": {str(w): self.batches[w] for w in live},
                                 "rates": {str(w): round(self.rates[w], 1) for w in live}})

    # ------------------------------------------------------------------ data
    def next_chunk(self, worker: int) -> Chunk:
        """The next samples for `worker`: `chunk_iterations` of its batches, or the rest of the
        epoch when less is left (a chunk never straddles two epochs).

        Under idpa a chunk is `probe_iterations` long until every live worker has been
        measured, since a chunk's batch size holds until the next: handed a full chunk at the
        probe's equal batch, the slowest of speeds 1,1,2,4 ran 12 iterations at 4x its share
        (0.68 s) while the fast workers waited at the staleness bound."""
        live = self._live()
        batch = self.batches[worker]
        probing = worker not in self.rates or (
            self.mode == "idpa" and not self._measured(live))
        iterations = self.probe_iterations if probing else self.chunk_iterations
        if self.pos >= len(self.pool):
            self._new_epoch()
        take = self.pool[self.pos:self.pos + batch * iterations]
        self.pos += len(take)
        self.outstanding[worker].append([take, self.epoch])
        return Chunk(take, batch, self.epoch)

    def _consumed(self, worker: int, samples: int) -> None:
        queue = self.outstanding[worker]
        while samples > 0 and queue:
            used = min(samples, len(queue[0][0]))
            queue[0][0] = queue[0][0][used:]
            samples -= used
            if not len(queue[0][0]):
                queue.pop(0)

    def reclaim(self, worker: int) -> None:
        """A worker's process died: what it was handed and had not reported consumed goes
        back to the pool. What it consumed after its last report (at most one chunk) is
        handed out again, so those samples may be trained twice in this epoch; none is lost."""
        queue, self.outstanding[worker] = self.outstanding[worker], []
        for indices, epoch in reversed(queue):
            self.give_back(worker, indices, epoch)

    def _new_epoch(self) -> None:
        self.epoch += 1
        self.pool = self.rng.permutation(self.n_samples)
        self.pos = 0

    def give_back(self, worker: int, indices: np.ndarray, epoch: int) -> None:
        """Unconsumed indices of a worker that leaves go back to the front of the pool (those of
        an epoch already over are dropped: that epoch cannot be revisited)."""
        self.outstanding[worker] = []
        if len(indices) and epoch == self.epoch:
            self.pool = np.concatenate([indices, self.pool[self.pos:]])
            self.pos = 0

    def _reshare(self) -> None:
        """Split the global batch over the live workers: by measured rate where every one of
        them has been measured, else equally (until the probe has measured them). A worker
        that comes back keeps its last measured rate."""
        if self.mode != "idpa" or not self.members.live:
            return
        live = sorted(self.members.live)
        rates = ([self.rates[w] for w in live] if self._measured(live)
                 else [1.0] * len(live))
        self.batches.update(zip(live, proportional_batches(self.global_batch, rates),
                                strict=True))

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """The allocation as tensors and plain values. What the workers were handed and had
        not reported consumed goes back in front of the pool, as if they had all left: the
        resumed run hands it out again, so no sample of the epoch is lost."""
        pending = [idx for queue in self.outstanding.values() for idx, epoch in queue
                   if epoch == self.epoch]
        pool = np.concatenate([*pending, self.pool[self.pos:]]).astype(np.int64)
        return {"rng": self.rng.bit_generator.state, "epoch": self.epoch,
                "pool": torch.from_numpy(pool), "rates": dict(self.rates),
                "batches": dict(self.batches)}

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state_dict`: the pool starts at its front (what was unconsumed at the
        save); under idpa the global batch is re-split over the workers live now."""
        self.rng.bit_generator.state = state["rng"]
        self.epoch = state["epoch"]
        self.pool, self.pos = state["pool"].numpy().copy(), 0
        self.rates = {int(w): float(r) for w, r in state["rates"].items()}
        self.batches = {int(w): int(b) for w, b in state["batches"].items()}
        self.outstanding = {w: [] for w in range(self.workers)}
        self._shared_among = frozenset(self.members.live)
        self._reshare()


class ShardSampler:
    """The static split that plain data parallelism uses, for the peers hetsync is measured
    against: a fixed shard per worker, reshuffled each epoch. Equal shards (every n-th
    sample), or with `batches` (each rank's batch size) shards in proportion to them, so
    that every rank passes over its shard in the same number of steps."""

    def __init__(self, n_samples: int, rank: int, workers: int, batch: int, seed: int,
                 batches: list[int] | None = None):
        if batches is None:
            self.shard = np.arange(rank, n_samples, workers)
        else:
            ends = np.cumsum([0, *batches]) * n_samples // sum(batches)
            self.shard = np.arange(ends[rank], ends[rank + 1])
        self.rng = np.random.default_rng(seed * 1000 + rank)
        self.batch = batch
        self.order, self.pos = self.shard, len(self.shard)

    def next(self) -> np.ndarray:
        """The next `batch` indices of this rank's shard; when fewer are left a new epoch begins,
        reshuffled, so an epoch's last partial batch is skipped."""
        if self.pos + self.batch > len(self.order):
            self.order, self.pos = self.rng.permutation(self.shard), 0
        self.pos += self.batch
        return self.order[self.pos - self.batch:self.pos]

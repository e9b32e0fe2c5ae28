"""The parameter server as a plain object: global weights, optimizer, consistency controller,
iteration budget and staleness accounting. The Ray actor in `actors.py` only adds waiting.

Update rule (gradient SGD): under SSP and ASP each gradient is applied on arrival; under BSP the
gradients of one clock are averaged, weighted by batch size, and applied as one step, which is
exactly one step on the union of the workers' batches (with the learning rate scaled to the
union's size, see `_step`).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch

from hetsync.consistency import ConsistencyController, Verdict


@dataclass
class Reply:
    """What a worker gets back from the server: fresh weights and permission to go on."""

    weights: np.ndarray
    version: int  # number of updates applied to the global weights
    min_clock: int  # slowest live worker's clock, for the worker's own gate decisions
    granted: int  # iterations newly granted from the global budget
    clock: int = 0  # the worker's own clock (meaningful on join)


@dataclass
class Snapshot:
    """Global weights at a moment, for off-path evaluation."""

    weights: np.ndarray
    iterations: int
    samples: int
    version: int
    time: float


class IterationBudget:
    """The global budget of mini-batch gradients, handed out as tickets on demand, so fast
    workers compute more of it (work-conserving) and the total stays exact."""

    def __init__(self, total: int):
        self.total = total
        self.granted = 0

    @property
    def remaining(self) -> int:
        return self.total - self.granted

    def grant(self, want: int) -> int:
        n = max(0, min(want, self.remaining))
        self.granted += n
        return n

    def give_back(self, n: int) -> None:
        """Tickets a worker can no longer use (it left or died) return to the pool."""
        self.granted -= n


@dataclass
class StalenessStats:
    max_gap: int = 0
    max_lag: int = 0
    gap_hist: Counter = field(default_factory=Counter)
    lag_hist: Counter = field(default_factory=Counter)

    def record(self, gap: int, lag: int) -> None:
        self.max_gap = max(self.max_gap, gap)
        self.max_lag = max(self.max_lag, lag)
        self.gap_hist[gap] += 1
        self.lag_hist[lag] += 1


class ParameterServer:
    def __init__(self, weights: np.ndarray, workers: int, bound: int | None, barrier: bool,
                 lr: float, momentum: float, batch_size: int, iterations: int,
                 eval_every: int, lease: int = 2):
        self.w = torch.nn.Parameter(torch.from_numpy(np.array(weights, dtype=np.float32)))
        self.opt = torch.optim.SGD([self.w], lr=lr, momentum=momentum)
        self.lr = lr
        self.batch_size = batch_size
        self.controller = ConsistencyController(workers, bound)
        self.barrier = barrier
        self.budget = IterationBudget(iterations)
        self.lease = lease
        self.version = 0
        self.applied = 0  # gradients applied (== iterations done)
        self.samples = 0
        self.loss_ema: float | None = None
        self.stats = StalenessStats()
        self.eval_every = eval_every
        self._next_snapshot = eval_every
        self._snapshots: list[Snapshot] = []
        self._round: dict[int, tuple[np.ndarray, int, int]] = {}  # BSP: worker -> contribution
        self.tickets: Counter = Counter()  # unused tickets per worker, to reclaim on leave

    # ------------------------------------------------------------------ membership
    def join(self, worker: int) -> Reply:
        clock = self.controller.table.clocks[worker]
        if worker not in self.controller.table.live:
            clock = self.controller.table.join(worker)
        return self._reply(worker, want=self.lease, clock=clock)

    def leave(self, worker: int) -> None:
        self.controller.table.leave(worker)
        self.budget.give_back(self.tickets.pop(worker, 0))
        self._maybe_close_round()

    # ------------------------------------------------------------------ updates
    def may_start(self, worker: int, clock: int) -> Verdict:
        return self.controller.may_start(worker, clock)

    def submit(self, worker: int, clock: int, base_version: int, grad: np.ndarray,
               batch_size: int, loss: float) -> None:
        """Take one gradient: apply it now (SSP, ASP) or add it to the open BSP round."""
        self.tickets[worker] -= 1
        self.loss_ema = loss if self.loss_ema is None else 0.95 * self.loss_ema + 0.05 * loss
        if self.barrier:
            self._round[worker] = (grad, batch_size, base_version)
            self._maybe_close_round()
            return
        self._record(worker, base_version, batch_size)
        self._step(torch.tensor(grad), batch_size)

    def is_applied(self, worker: int, clock: int) -> bool:
        """Has the gradient `worker` computed at `clock` been applied?"""
        return self.controller.table.clocks[worker] > clock

    def _maybe_close_round(self) -> None:
        live = self.controller.table.live
        if not self._round or not live.issubset(self._round):
            return
        grads = [torch.tensor(g) for g, _, _ in self._round.values()]
        sizes = torch.tensor([b for _, b, _ in self._round.values()], dtype=torch.float32)
        mean = (torch.stack(grads) * (sizes / sizes.sum())[:, None]).sum(0)
        for worker, (_, batch, base) in sorted(self._round.items()):
            self._record(worker, base, batch)
        self._round.clear()
        self._step(mean, int(sizes.sum()))

    def _record(self, worker: int, base_version: int, batch_size: int) -> None:
        gap = self.controller.record_applied(worker)
        self.stats.record(gap, self.version - base_version)
        self.applied += 1
        self.samples += batch_size
        if self.applied >= self._next_snapshot:
            self._snapshots.append(self.snapshot())
            self._next_snapshot += self.eval_every

    def _step(self, grad: torch.Tensor, samples: int) -> None:
        # Linear scaling rule: `lr` is the rate for one mini-batch of `batch_size` samples, so
        # a BSP step on the union of N batches moves as far as N small steps would.
        self.opt.param_groups[0]["lr"] = self.lr * samples / self.batch_size
        self.w.grad = grad.to(self.w.dtype).reshape(self.w.shape)
        self.opt.step()
        self.version += 1

    # ------------------------------------------------------------------ replies and reports
    def reply(self, worker: int, want: int = 1) -> Reply:
        return self._reply(worker, want, self.controller.table.clocks[worker])

    def _reply(self, worker: int, want: int, clock: int) -> Reply:
        granted = self.budget.grant(want)
        self.tickets[worker] += granted
        return Reply(self.weights(), self.version, self.controller.table.min_clock(), granted,
                     clock)

    def weights(self) -> np.ndarray:
        return self.w.detach().numpy().copy()

    def snapshot(self) -> Snapshot:
        return Snapshot(self.weights(), self.applied, self.samples, self.version, time.time())

    def take_snapshots(self) -> list[Snapshot]:
        out, self._snapshots = self._snapshots, []
        return out

    def status(self) -> dict:
        return {
            "iterations": self.applied,
            "samples": self.samples,
            "updates": self.version,
            "loss": self.loss_ema,
            "max_staleness_observed": self.stats.max_gap,
            "max_version_lag": self.stats.max_lag,
            "staleness_histogram": {str(k): v for k, v in sorted(self.stats.gap_hist.items())},
            "version_lag_histogram": {str(k): v for k, v in sorted(self.stats.lag_hist.items())},
            "clocks": dict(self.controller.table.clocks),
            "live_workers": sorted(self.controller.table.live),
            "budget_remaining": self.budget.remaining,
        }

"""The parameter server as a plain object: global weights, optimizer, consistency controller,
iteration budget and staleness accounting. The Ray actor in `actors.py` only adds waiting.

Under SSP and ASP each push is applied on arrival; under BSP the pushes of one clock are
combined into one update when the last live worker's arrives. What an update does is the
update rule's business (`updates.py`).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch

from hetsync.consistency import ConsistencyController, Verdict
from hetsync.updates import AgwuRule, LrSchedule, SgdRule

# One pushed update: (clock, base version, payload, samples, loss, local steps, accuracy).
# The payload is a gradient (sgd) or replica weights (agwu). A plain tuple, because it crosses
# Ray once per iteration and every pickled class costs time there.
Contribution = tuple[int, int, np.ndarray, int, float, int, float | None]


@dataclass
class Reply:
    """What a worker gets back from the server: fresh weights and permission to go on."""

    weights: np.ndarray
    version: int  # number of updates applied to the global weights
    min_clock: int  # slowest live worker's clock, for the worker's own gate decisions
    granted: int  # iterations newly granted from the global budget
    clock: int = 0  # the worker's own clock (meaningful on join)
    lr: float = 0.0  # the scheduled learning rate now, for AGWU's local steps


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
                 eval_every: int, lease: int = 2, update: str = "sgd", gamma: float = 0.9,
                 local_steps: int = 1, lr_schedule: str = "constant"):
        self.w = torch.nn.Parameter(torch.from_numpy(np.array(weights, dtype=np.float32)))
        self.schedule = LrSchedule(lr, iterations, lr_schedule)
        self.rule = (SgdRule(self.w, self.schedule, momentum, batch_size) if update == "sgd"
                     else AgwuRule(self.w, gamma))
        self.local_steps = local_steps  # gradients per push: tickets move in these units
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
        # BSP: worker -> (payload, samples, base version, accuracy, steps) of the open round
        self._round: dict[int, tuple] = {}
        self.tickets: Counter = Counter()  # unused tickets per worker, to reclaim on leave

    # ------------------------------------------------------------------ membership
    def join(self, worker: int) -> Reply:
        clock = self.controller.table.clocks[worker]
        if worker not in self.controller.table.live:
            clock = self.controller.table.join(worker)
        return self._reply(worker, want=self.lease * self.local_steps, clock=clock)

    def leave(self, worker: int) -> None:
        self.controller.table.leave(worker)
        self.budget.give_back(self.tickets.pop(worker, 0))
        self._maybe_close_round()

    # ------------------------------------------------------------------ updates
    def may_start(self, worker: int, clock: int) -> Verdict:
        return self.controller.may_start(worker, clock)

    def submit(self, worker: int, clock: int, base_version: int, payload: np.ndarray,
               samples: int, loss: float, steps: int = 1, accuracy: float | None = None) -> None:
        """Take one push (a gradient, or replica weights after `steps` local steps): apply it
        now (SSP, ASP) or add it to the open BSP round."""
        self.tickets[worker] -= steps
        self.loss_ema = loss if self.loss_ema is None else 0.95 * self.loss_ema + 0.05 * loss
        if self.barrier:
            self._round[worker] = (payload, samples, base_version, accuracy, steps)
            self._maybe_close_round()
            return
        lag = self.version - base_version
        self._record(worker, lag, samples, steps)
        self.rule.apply(payload, samples, lag, worker, accuracy, self.controller.table.live)
        self.version += 1

    def is_applied(self, worker: int, clock: int) -> bool:
        """Has the gradient `worker` computed at `clock` been applied?"""
        return self.controller.table.clocks[worker] > clock

    def _maybe_close_round(self) -> None:
        live = self.controller.table.live
        if not self._round or not live.issubset(self._round):
            return
        contributions = []
        for worker, (payload, samples, base, acc, steps) in sorted(self._round.items()):
            self._record(worker, self.version - base, samples, steps)
            contributions.append((worker, payload, samples, acc))
        self._round.clear()
        self.rule.apply_round(contributions)
        self.version += 1

    def _record(self, worker: int, lag: int, samples: int, steps: int) -> None:
        gap = self.controller.record_applied(worker)
        self.stats.record(gap, lag)
        self.applied += steps
        self.samples += samples
        if self.applied >= self._next_snapshot:
            self._snapshots.append(self.snapshot())
            self._next_snapshot += self.eval_every * (
                (self.applied - self._next_snapshot) // self.eval_every + 1)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """What a restarted server needs, as tensors and plain values (so that it loads with
        `weights_only=True`). An open BSP round and unused tickets are not saved: the workers
        that held them start again from these weights."""
        return {
            "weights": self.w.detach().clone(),
            "rule": self.rule.state_dict(),
            "version": self.version,
            "applied": self.applied,
            "samples": self.samples,
            "loss_ema": self.loss_ema,
            "clocks": dict(self.controller.table.clocks),
            "live": sorted(self.controller.table.live),
            "stats": {"max_gap": self.stats.max_gap, "max_lag": self.stats.max_lag,
                      "gap_hist": dict(self.stats.gap_hist),
                      "lag_hist": dict(self.stats.lag_hist)},
            "next_snapshot": self._next_snapshot,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from a checkpoint. Every worker is live again; one that was gone when it
        was saved comes back at the slowest saved clock, as a rejoining worker would."""
        with torch.no_grad():
            self.w.copy_(state["weights"])
        self.rule.load_state_dict(state["rule"])
        self.version, self.applied = state["version"], state["applied"]
        self.samples, self.loss_ema = state["samples"], state["loss_ema"]
        self.budget.granted = self.applied  # tickets handed out but unused come back
        clocks = {int(w): c for w, c in state["clocks"].items()}
        live = [int(w) for w in state["live"]] or list(clocks)
        floor = min(clocks[w] for w in live)
        table = self.controller.table
        for w in table.clocks:
            table.clocks[w] = clocks[w] if w in live else floor
        table.live = set(table.clocks)
        st = state["stats"]
        self.stats = StalenessStats(st["max_gap"], st["max_lag"], Counter(st["gap_hist"]),
                                    Counter(st["lag_hist"]))
        self._next_snapshot = state["next_snapshot"]

    # ------------------------------------------------------------------ replies and reports
    def reply(self, worker: int, want: int = 1) -> Reply:
        return self._reply(worker, want * self.local_steps, self.controller.table.clocks[worker])

    def _reply(self, worker: int, want: int, clock: int) -> Reply:
        granted = self.budget.grant(want)
        self.tickets[worker] += granted
        return Reply(self.weights(), self.version, self.controller.table.min_clock(), granted,
                     clock, self.schedule.at(self.applied))

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

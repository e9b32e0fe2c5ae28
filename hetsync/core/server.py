"""The parameter server as a plain object: global weights and buffers, the update rule, the
consistency controller, the iteration budget, staleness accounting, and the push and wait
protocol. The Ray actor (`hetsync.cluster.actors`) only adds the waiting itself; an
in-process client calls the same methods.

Under SSP and ASP each push is applied on arrival; under BSP the pushes of one clock are
combined into one update when the last live worker's arrives. What an update does to the
weights is the update rule's business (`updates.py`); what it does to the buffers, the one
rule in `wire.py`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from hetsync.core.consistency import ConsistencyController, Membership
from hetsync.core.updates import AgwuRule, DelayCompensation, LrSchedule, SgdRule
from hetsync.core.wire import Contribution, Reply, Snapshot, Status, weighted_mean


class IterationBudget:
    """The global budget of mini-batch gradients, handed out as tickets on demand, so fast
    workers compute more of it (work-conserving) and the total stays exact."""

    def __init__(self, total: int):
        self.total = total
        self.granted = 0

    @property
    def remaining(self) -> int:
        """Gradients not yet handed out as tickets."""
        return self.total - self.granted

    def grant(self, want: int) -> int:
        """Hand out up to `want` tickets, fewer (or none) when the budget runs short; returns how
        many."""
        n = max(0, min(want, self.remaining))
        self.granted += n
        return n

    def give_back(self, n: int) -> None:
        """Tickets a worker can no longer use (it left or died) return to the pool."""
        self.granted -= n


@dataclass
class StalenessStats:
    """Maxima and histograms of the applied pushes' staleness (clock gap) and version lag, for
    status and summary.json."""

    max_staleness: int = 0
    max_lag: int = 0
    staleness: Counter = field(default_factory=Counter)
    lag: Counter = field(default_factory=Counter)

    def record(self, staleness: int, lag: int) -> None:
        """Count one applied push's staleness and version lag."""
        self.max_staleness = max(self.max_staleness, staleness)
        self.max_lag = max(self.max_lag, lag)
        self.staleness[staleness] += 1
        self.lag[lag] += 1

    def state_dict(self) -> dict:
        """The counters as plain values, for a checkpoint."""
        return {"max_staleness": self.max_staleness, "max_lag": self.max_lag,
                "staleness": dict(self.staleness), "lag": dict(self.lag)}

    @classmethod
    def from_state(cls, st: dict) -> StalenessStats:
        """The counters a `state_dict` saved."""
        return cls(st["max_staleness"], st["max_lag"], Counter(st["staleness"]),
                   Counter(st["lag"]))


@dataclass(frozen=True)
class Awaiting:
    """What a push or a wait leaves the caller to do: wait until `ready()`, then take
    `reply()`. `blocker()` names who holds it back, for a timeout's message. `reply(copy=False)`
    holds views of the live weights, for a transport that copies them into its message before
    the next update (under the caller's lock)."""

    ready: Callable[[], bool]
    blocker: Callable[[], str]
    reply: Callable[..., Reply]


class ParameterServer:
    """The global weights and all that decides their updates, as plain Python: the actor calls it
    under its lock and does the waiting (module docstring)."""

    def __init__(self, weights: np.ndarray, workers: int, bound: int | None, barrier: bool,
                 lr: float, momentum: float, batch_size: int, iterations: int,
                 eval_every: int, buffers: np.ndarray | None = None, lease: int = 2,
                 update: str = "sgd", gamma: float = 0.9, steps_per_push: int = 1,
                 lr_schedule: str = "constant", members: Membership | None = None,
                 delay_compensation: float = 0.0):
        self.w = torch.from_numpy(np.array(weights, dtype=np.float32))  # updated in place
        self.buffers = None if buffers is None else np.array(buffers, dtype=np.float32)
        self.schedule = LrSchedule(lr, iterations, lr_schedule)
        self.rule = (SgdRule(self.w, self.schedule, momentum, batch_size) if update == "sgd"
                     else AgwuRule(self.w, gamma))
        # DC-ASGD's correction of stale gradients (`DelayCompensation`); BSP's are never stale
        self.compensation = (DelayCompensation(self.w, delay_compensation)
                             if delay_compensation and update == "sgd" and not barrier else None)
        self.steps_per_push = steps_per_push  # gradients a push spends: tickets move in these units
        self.consistency = ConsistencyController(members or Membership(workers), bound)
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
        self._round: dict[int, Contribution] = {}  # BSP: each live worker's push of the round
        self.tickets: Counter = Counter()  # unused tickets per worker, to reclaim on leave

    # ------------------------------------------------------------------ the protocol
    def join(self, worker: int) -> Reply:
        """A worker (re)starts: admitted at the slowest live clock, with a lease of tickets."""
        clock = self.consistency.join(worker)
        return self._reply(worker, want=self.lease * self.steps_per_push, clock=clock)

    def push(self, worker: int, contributions: list[Contribution]) -> Awaiting:
        """Take a worker's pushes; its reply waits until the last of them is applied (under
        BSP, until the round that holds it closes)."""
        for c in contributions:
            self.submit(worker, c)
        last = contributions[-1].clock
        return Awaiting(lambda: self.consistency.clock(worker) > last,
                        lambda: self._push_blocker(worker, last),
                        lambda copy=True: self.reply(worker, len(contributions), copy))

    def _push_blocker(self, worker: int, clock: int) -> str:
        missing = sorted(self.consistency.live - set(self._round))
        if self.barrier and missing:
            return (f"worker {worker}'s push of clock {clock} waits for the BSP round: no push "
                    f"yet from worker(s) {', '.join(map(str, missing))}")
        return self.consistency.blocker_report(worker, clock)

    def wait_until_allowed(self, worker: int, clock: int) -> Awaiting:
        """A worker whose own view of the clocks says wait asks here, with the true view."""
        return Awaiting(lambda: self.consistency.may_start(clock).proceed,
                        lambda: self.consistency.blocker_report(worker, clock),
                        lambda copy=True: self.reply(worker, 0, copy))

    def leave(self, worker: int) -> None:
        """A worker finished or died: it holds no one back, and its tickets come back."""
        self.consistency.leave(worker)
        if self.compensation is not None:
            self.compensation.forget(worker)
        self.budget.give_back(self.tickets.pop(worker, 0))
        self._maybe_close_round()

    def reply(self, worker: int, want: int = 1, copy: bool = True) -> Reply:
        """A reply to `worker` granting up to `want` pushes' worth of tickets; `copy=False` gives
        views of the live weights, which the next update changes in place."""
        return self._reply(worker, want * self.steps_per_push, self.consistency.clock(worker),
                           copy)

    # ------------------------------------------------------------------ updates
    def submit(self, worker: int, c: Contribution) -> None:
        """Apply one push now (SSP, ASP) or add it to the open BSP round."""
        self.tickets[worker] -= c.steps
        self.loss_ema = c.loss if self.loss_ema is None else 0.95 * self.loss_ema + 0.05 * c.loss
        if self.barrier:
            self._round[worker] = c
            self._maybe_close_round()
            return
        self._record(worker, c)
        payload = c.payload if self.compensation is None else self.compensation.correct(
            c.payload, worker, c.base_version, self.version)
        self.rule.apply(payload, c.samples, self.version - c.base_version, worker, c.accuracy,
                        self.consistency.live)
        if c.buffers is not None:
            self.buffers = np.array(c.buffers, dtype=np.float32)
        self._applied_update()

    def _maybe_close_round(self) -> None:
        if not self._round or not self.consistency.live.issubset(self._round):
            return
        pushes = sorted(self._round.items())
        self._round.clear()
        for worker, c in pushes:
            self._record(worker, c)
        self.rule.apply_round([(w, c.payload, c.samples, c.accuracy) for w, c in pushes])
        carried = [(c.buffers, c.samples) for _, c in pushes if c.buffers is not None]
        if carried:
            self.buffers = weighted_mean([b for b, _ in carried], [s for _, s in carried])
        self._applied_update()

    def _record(self, worker: int, c: Contribution) -> None:
        self.stats.record(self.consistency.record_applied(worker), self.version - c.base_version)
        self.applied += c.steps
        self.samples += c.samples

    def _applied_update(self) -> None:
        self.version += 1
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
            "buffers": None if self.buffers is None else torch.from_numpy(self.buffers.copy()),
            "rule": self.rule.state_dict(),
            "version": self.version,
            "applied": self.applied,
            "samples": self.samples,
            "loss_ema": self.loss_ema,
            "consistency": self.consistency.state_dict(),
            "stats": self.stats.state_dict(),
            "next_snapshot": self._next_snapshot,
            "compensation": None if self.compensation is None else self.compensation.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from a checkpoint; every worker is live again (`ConsistencyController`)."""
        with torch.no_grad():
            self.w.copy_(state["weights"])
        self.buffers = None if state["buffers"] is None else state["buffers"].numpy().copy()
        self.rule.load_state_dict(state["rule"])
        self.version, self.applied = state["version"], state["applied"]
        self.samples, self.loss_ema = state["samples"], state["loss_ema"]
        self.budget.granted = self.applied  # tickets handed out but unused come back
        self.consistency.load_state_dict(state["consistency"])
        self.stats = StalenessStats.from_state(state["stats"])
        self._next_snapshot = state["next_snapshot"]
        if self.compensation is not None and state.get("compensation") is not None:
            self.compensation.load_state_dict(state["compensation"])

    # ------------------------------------------------------------------ reads
    def _reply(self, worker: int, want: int, clock: int, copy: bool = True) -> Reply:
        granted = self.budget.grant(want)
        self.tickets[worker] += granted
        weights = self.weights() if copy else self.w.detach().numpy()
        if self.compensation is not None:
            self.compensation.replied(worker, self.version)
        return Reply(weights, self.buffers, self.version, self.consistency.min_clock(), granted,
                     clock, self.schedule.at(self.applied))

    def weights(self) -> np.ndarray:
        """A copy of the global weights, safe to keep across updates."""
        return self.w.detach().numpy().copy()

    def snapshot(self) -> Snapshot:
        """The weights, buffers and counters now, stamped with time.time() for the accuracy
        curve."""
        return Snapshot(self.weights(), self.buffers, self.applied, self.samples, self.version,
                        time.time())

    def take_snapshots(self) -> list[Snapshot]:
        """The snapshots taken every `eval_every` applied gradients since the last call; each is
        handed out once."""
        out, self._snapshots = self._snapshots, []
        return out

    def status(self) -> Status:
        """The counters now, for the driver; histogram keys are strings, as JSON has them."""
        return Status(
            iterations=self.applied,
            samples=self.samples,
            updates=self.version,
            loss=self.loss_ema,
            max_staleness_observed=self.stats.max_staleness,
            max_version_lag=self.stats.max_lag,
            staleness_histogram={str(k): v for k, v in sorted(self.stats.staleness.items())},
            version_lag_histogram={str(k): v for k, v in sorted(self.stats.lag.items())},
            clocks=dict(self.consistency.table.clocks),
            live_workers=sorted(self.consistency.live),
            budget_remaining=self.budget.remaining,
        )

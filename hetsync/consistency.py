"""Consistency models as plain objects: the clock table and the staleness gate.

A worker's *clock* is the number of its gradients the server has applied. The gate lets a
worker start iteration `clock` only while `clock - min_clock <= bound`, where `min_clock` is the
slowest live worker's clock and `bound` is 0 (BSP), S (SSP) or None (ASP, never wait). Since
`min_clock` never decreases while a gradient is in flight, every applied gradient then satisfies
`clock - min_clock <= bound` at the moment it is applied: the quantity S bounds.

Nothing here knows about Ray; the server actor waits on a condition when the gate says WAIT.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Action(Enum):
    PROCEED = "proceed"
    WAIT = "wait"


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str = ""

    @property
    def proceed(self) -> bool:
        return self.action is Action.PROCEED


class StalenessGate:
    """Decides whether iteration `clock` may start, given the slowest worker's clock."""

    def __init__(self, bound: int | None):
        if bound is not None and bound < 0:
            raise ValueError(f"staleness bound must be >= 0 or None, got {bound}")
        self.bound = bound

    def decide(self, clock: int, min_clock: int) -> Verdict:
        if self.bound is None or clock - min_clock <= self.bound:
            return Verdict(Action.PROCEED)
        return Verdict(
            Action.WAIT,
            f"clock {clock} is {clock - min_clock} ahead of the slowest worker "
            f"(clock {min_clock}); the bound is {self.bound}",
        )


class ClockTable:
    """Per-worker clocks over the *live* workers only: a worker that left (finished its work or
    died) no longer holds the others back, so neither the gate nor a barrier can deadlock on it."""

    def __init__(self, workers: int):
        self.clocks: dict[int, int] = {w: 0 for w in range(workers)}
        self.live: set[int] = set(range(workers))

    def min_clock(self) -> int:
        """The slowest live worker's clock; with no live worker, the largest clock seen."""
        if not self.live:
            return max(self.clocks.values(), default=0)
        return min(self.clocks[w] for w in self.live)

    def slowest(self) -> int | None:
        return min(self.live, key=lambda w: (self.clocks[w], w)) if self.live else None

    def gap(self, worker: int) -> int:
        """How far `worker` is ahead of the slowest live worker."""
        return self.clocks[worker] - self.min_clock()

    def advance(self, worker: int) -> None:
        self.clocks[worker] += 1

    def leave(self, worker: int) -> None:
        self.live.discard(worker)

    def join(self, worker: int) -> int:
        """(Re)admit a worker at the slowest live clock, so that admitting it never lowers
        `min_clock` below what in-flight gradients were admitted against."""
        clock = self.min_clock() if self.live else self.clocks.get(worker, 0)
        self.clocks[worker] = clock
        self.live.add(worker)
        return clock


class ConsistencyController:
    """Clock table plus gate: the whole consistency model, driven by the server."""

    def __init__(self, workers: int, bound: int | None):
        self.table = ClockTable(workers)
        self.gate = StalenessGate(bound)

    def may_start(self, worker: int, clock: int) -> Verdict:
        return self.gate.decide(clock, self.table.min_clock())

    def record_applied(self, worker: int) -> int:
        """Account for one applied gradient of `worker`; return its staleness (its clock minus
        the slowest live clock, measured just before it advances)."""
        gap = self.table.gap(worker) if worker in self.table.live else 0
        self.table.advance(worker)
        return gap

    def blocker_report(self, worker: int, clock: int) -> str:
        """One line naming who holds `worker` back, for timeout errors."""
        slow = self.table.slowest()
        if slow is None:
            return f"worker {worker} waits at clock {clock} but no worker is live"
        return (
            f"worker {worker} waits at clock {clock} for worker {slow} "
            f"(clock {self.table.clocks[slow]}, {clock - self.table.clocks[slow]} behind; "
            f"bound {self.gate.bound})"
        )

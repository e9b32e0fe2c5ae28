"""Consistency models as plain objects: membership, the clock table and the staleness gate.

A worker's *clock* is the number of its pushes the server has applied. The gate lets a
worker start iteration `clock` only while `clock - min_clock <= bound`, where `min_clock` is the
slowest live worker's clock and `bound` is 0 (BSP), S (SSP) or None (ASP, never wait). Since
`min_clock` never decreases while a gradient is in flight, every applied gradient then satisfies
`clock - min_clock <= bound` at the moment it is applied: the quantity S bounds, reported as
*staleness*.

Nothing here knows about Ray; the server actor waits on a condition when the gate says WAIT.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Action(Enum):
    """What the staleness gate tells a worker about to start an iteration."""

    PROCEED = "proceed"
    WAIT = "wait"


@dataclass(frozen=True)
class Verdict:
    """The gate's answer; `reason` (empty for PROCEED) says why the worker waits, in words for a
    log or an error message."""

    action: Action
    reason: str = ""

    @property
    def proceed(self) -> bool:
        """Whether the worker may start now."""
        return self.action is Action.PROCEED


class StalenessGate:
    """Decides whether iteration `clock` may start, given the slowest worker's clock."""

    def __init__(self, bound: int | None):
        if bound is not None and bound < 0:
            raise ValueError(f"staleness bound must be >= 0 or None, got {bound}")
        self.bound = bound

    def decide(self, clock: int, min_clock: int) -> Verdict:
        """PROCEED if `clock` is at most `bound` ahead of `min_clock` (always under ASP), else
        WAIT with the gap in the reason."""
        if self.bound is None or clock - min_clock <= self.bound:
            return Verdict(Action.PROCEED)
        return Verdict(
            Action.WAIT,
            f"clock {clock} is {clock - min_clock} ahead of the slowest worker "
            f"(clock {min_clock}); the bound is {self.bound}",
        )


class Membership:
    """Which workers are live: the one set that the clock table and the data allocator (which
    run in one process) both read. A worker that left (finished its work or died) holds no
    one back and is handed no data."""

    def __init__(self, workers: int):
        self.workers = workers
        self.live: set[int] = set(range(workers))

    def leave(self, worker: int) -> None:
        """`worker` is no longer live; leaving twice is harmless."""
        self.live.discard(worker)

    def join(self, worker: int) -> None:
        """`worker` is live again; the clock it goes on from is the clock table's business
        (`ClockTable.join`)."""
        self.live.add(worker)

    def revive_all(self) -> None:
        """Every worker live again, as loading a checkpoint makes them."""
        self.live = set(range(self.workers))


class ClockTable:
    """Per-worker clocks, read over the live workers only, so that neither the gate nor a
    barrier can deadlock on a worker that left."""

    def __init__(self, members: Membership):
        self.members = members
        self.clocks: dict[int, int] = dict.fromkeys(range(members.workers), 0)

    def min_clock(self) -> int:
        """The slowest live worker's clock; with no live worker, the largest clock seen."""
        if not self.members.live:
            return max(self.clocks.values(), default=0)
        return min(self.clocks[w] for w in self.members.live)

    def slowest(self) -> int | None:
        """The live worker with the smallest clock (the lowest id on a tie), or None when none is
        live."""
        live = self.members.live
        return min(live, key=lambda w: (self.clocks[w], w)) if live else None

    def gap(self, worker: int) -> int:
        """How far `worker` is ahead of the slowest live worker."""
        return self.clocks[worker] - self.min_clock()

    def advance(self, worker: int) -> None:
        """Count one more applied push of `worker`."""
        self.clocks[worker] += 1

    def join(self, worker: int) -> int:
        """(Re)admit a worker at the slowest live clock, so that admitting it never lowers
        `min_clock` below what in-flight gradients were admitted against."""
        if worker not in self.members.live:
            if self.members.live:
                self.clocks[worker] = self.min_clock()
            self.members.join(worker)
        return self.clocks[worker]


class ConsistencyController:
    """Membership, clock table and gate: the whole consistency model, driven by the server."""

    def __init__(self, members: Membership, bound: int | None):
        self.members = members
        self.table = ClockTable(members)
        self.gate = StalenessGate(bound)

    @property
    def live(self) -> set[int]:
        """The live workers: the `Membership`'s own set, which the allocator shares, not a copy."""
        return self.members.live

    def clock(self, worker: int) -> int:
        """`worker`'s clock: its applied pushes, set to the slowest live clock when it rejoins
        (`ClockTable.join`)."""
        return self.table.clocks[worker]

    def min_clock(self) -> int:
        """The slowest live worker's clock; with none live, the largest clock seen."""
        return self.table.min_clock()

    def join(self, worker: int) -> int:
        """(Re)admit `worker`; returns the clock it goes on from (the slowest live one if it had
        left)."""
        return self.table.join(worker)

    def leave(self, worker: int) -> None:
        """`worker` holds no one back from now on; its clock stays in the table (status reports
        it)."""
        self.members.leave(worker)

    def may_start(self, clock: int) -> Verdict:
        """The gate's verdict on starting iteration `clock`, against the slowest live worker now."""
        return self.gate.decide(clock, self.table.min_clock())

    def record_applied(self, worker: int) -> int:
        """Account for one applied push of `worker`; return its staleness (its clock minus
        the slowest live clock, measured just before it advances)."""
        gap = self.table.gap(worker) if worker in self.members.live else 0
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

    def state_dict(self) -> dict:
        """The clocks and the live workers, as plain values for a checkpoint."""
        return {"clocks": dict(self.table.clocks), "live": sorted(self.members.live)}

    def load_state_dict(self, state: dict) -> None:
        """Every worker is live again; one that was gone when the state was saved comes back
        at the slowest saved clock, as a rejoining worker would."""
        clocks = {int(w): c for w, c in state["clocks"].items()}
        live = [int(w) for w in state["live"]] or list(clocks)
        floor = min(clocks[w] for w in live)
        for w in self.table.clocks:
            self.table.clocks[w] = clocks[w] if w in live else floor
        self.members.revive_all()

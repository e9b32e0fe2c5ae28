"""The driver's policies for faults, as plain objects: which processes to kill when (fault
injection), and what to do when a worker or the server is lost. They decide; the driver
acts (docs/reliability.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from hetsync.core.wire import Status
from hetsync.errors import ClusterError

# A server that keeps dying is not worth restarting forever.
MAX_SERVER_RESTARTS = 3


@dataclass
class FaultPlan:
    """Real process kills: worker W once its clock reaches I; the server once the run has
    done I iterations. Each fires once."""

    worker_kills: dict[int, int] = field(default_factory=dict)
    server_kill: int | None = None

    def workers_due(self, status: Status) -> list[int]:
        """The workers whose clock has reached their kill; each is returned once."""
        due = [w for w, at in self.worker_kills.items() if status.clocks[w] >= at]
        for w in due:
            del self.worker_kills[w]
        return due

    def server_due(self, status: Status) -> bool:
        """Whether the run has done the iterations of the server's kill; true once only."""
        if self.server_kill is not None and status.iterations >= self.server_kill:
            self.server_kill = None
            return True
        return False


class Decision(Enum):
    """What the driver does with a worker whose process died."""

    RESTART = "restart"
    LEAVE_BEHIND = "leave behind"


class RestartPolicy:
    """A lost worker is restarted while it has restarts left, else left behind (the others
    finish the budget); a lost server is restarted from the last checkpoint, at most
    `MAX_SERVER_RESTARTS` times."""

    def __init__(self, workers: int, max_restarts: int):
        self.restarts_left = dict.fromkeys(range(workers), max_restarts)
        self.gone: list[int] = []  # workers left behind for good
        self.worker_restarts = 0
        self.server_restarts = 0

    def worker_lost(self, worker: int) -> Decision:
        """RESTART while `worker` has restarts left (using one up), else LEAVE_BEHIND for good."""
        if self.restarts_left[worker] == 0:
            self.gone.append(worker)
            return Decision.LEAVE_BEHIND
        self.restarts_left[worker] -= 1
        self.worker_restarts += 1
        return Decision.RESTART

    def server_lost(self, at: int, has_checkpoint: bool) -> None:
        """Count a server restart, or raise why the run cannot go on."""
        if not has_checkpoint:
            raise ClusterError(f"the parameter server died at iteration {at} and there is no "
                               "checkpoint to restart it from (use --out and --checkpoint-every)")
        if self.server_restarts == MAX_SERVER_RESTARTS:
            raise ClusterError(f"the parameter server died {MAX_SERVER_RESTARTS + 1} times")
        self.server_restarts += 1

    def live(self, workers: int) -> list[int]:
        """The workers of 0..workers-1 not left behind: those the driver may launch again."""
        return [w for w in range(workers) if w not in self.gone]

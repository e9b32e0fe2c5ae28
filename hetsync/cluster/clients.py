"""The one bounded wait on Ray, and the worker loop's clients of the server actor.

Ray's errors become typed hetsync errors here: a dead actor is `WorkerLost` or `ServerLost`
(raised `from` Ray's error), a hetsync error raised inside an actor is re-raised as itself,
anything else is a one-line `ClusterError`.
"""

from __future__ import annotations

import numpy as np
import ray

from hetsync.core.partitioning import Chunk
from hetsync.core.wire import Contribution, Reply
from hetsync.errors import ClusterError, HetsyncError


class WorkerLost(ClusterError):
    """A worker's process died."""


class ServerLost(ClusterError):
    """The parameter server's process (which hosts the allocator) died."""


class ActorRestarting(WorkerLost):
    """A worker's process died and Ray is restarting it (only workers are restarted)."""


def bounded_get(refs, timeout_s: float, doing: str, lost: type[ClusterError] = ClusterError):
    """ray.get with a bound. A dead actor raises `lost` (with Ray restarting it,
    `ActorRestarting`); the message says what was being done."""
    try:
        return ray.get(refs, timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        raise ClusterError(f"timed out after {timeout_s:.0f} s while {doing}") from None
    except ray.exceptions.ActorUnavailableError as e:
        # only workers are restarted; for anything else, unavailable is lost
        raise (ActorRestarting if lost is WorkerLost else lost)(
            f"{doing}: the process died") from e
    except ray.exceptions.RayActorError as e:
        raise lost(f"{doing} failed: the process died") from e
    except ray.exceptions.RayError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, HetsyncError):
            raise cause from e
        text = str(cause if isinstance(cause, Exception) else e).strip().splitlines()
        raise ClusterError(f"{doing} failed: {text[-1] if text else type(e).__name__}") from e


# A worker waits this much longer than the server does, so that a worker held too long hears
# the server's message, which names the worker it waited for.
REPLY_GRACE_S = 30.0


class RayServerClient:
    """The worker loop's view of the server actor. (A push thread was measured and rejected:
    it contends for the GIL with the compute thread and made iterations slower, not faster.)"""

    def __init__(self, handle, timeout_s: float):
        self.handle = handle
        self.timeout_s = timeout_s

    def get(self, ref) -> Reply:
        """Block for the reply to `ref`, at most the run's timeout plus REPLY_GRACE_S; a dead
        server raises `ServerLost`, a hetsync error the server raised is re-raised as itself."""
        return bounded_get(ref, self.timeout_s + REPLY_GRACE_S,
                           "waiting for the parameter server", ServerLost)

    def join(self, worker: int) -> Reply:
        """(Re)join and block (bounded as `get`) for the reply: the weights, the clock to go on
        from and the first tickets."""
        return self.get(self.handle.join.remote(worker))

    def push(self, worker: int, contributions: list[Contribution]):
        """Send a push without waiting; returns the reference for `get`."""
        return self.handle.push.remote(worker, contributions)

    def wait_until_allowed(self, worker: int, clock: int):
        """Ask, without waiting, for a reply once iteration `clock` may start; returns the
        reference for `get`."""
        return self.handle.wait_until_allowed.remote(worker, clock)

    def leave(self, worker: int) -> None:
        """Leave and block (bounded as `get`) until the server has let go of the worker."""
        self.get(self.handle.leave.remote(worker))

    def close(self) -> None:
        """Nothing to release: Ray owns the connection."""


class RayAllocatorClient:
    """A worker's view of the data allocator, which the server actor of shard 0 hosts."""

    def __init__(self, handle, timeout_s: float):
        self.handle = handle
        self.timeout_s = timeout_s

    def next_chunk(self, worker: int, samples: int, seconds: float, timed: int):
        """Report `samples` consumed since the last request, `timed` of them computed in
        `seconds`, and ask for the next chunk, without waiting; returns the reference for
        `get`."""
        return self.handle.next_chunk.remote(worker, samples, seconds, timed)

    def give_back(self, worker: int, indices: np.ndarray, epoch: int) -> None:
        """Return unconsumed `indices` of `epoch` to the pool; blocks until done (bounded as
        `get`)."""
        self.get(self.handle.give_back.remote(worker, indices, epoch))

    def get(self, ref) -> Chunk:
        """Block for a chunk, at most the run's timeout; a dead server raises `ServerLost`."""
        return bounded_get(ref, self.timeout_s, "waiting for the data allocator", ServerLost)

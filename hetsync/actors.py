"""The Ray layer: thin actors around the plain objects, made remote here and nowhere else.

Each wait is bounded by the run's timeout and, when it expires, names the worker that is late.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

import numpy as np
import ray

from hetsync.errors import ClusterError, HetsyncError
from hetsync.heterogeneity import CpuHog
from hetsync.partitioning import Allocator, Chunk
from hetsync.server import Contribution, ParameterServer, Reply, Snapshot
from hetsync.worker import Worker, WorkerReport, run_worker


def whereabouts() -> tuple[str, int]:
    """(node id, process id) of the calling process, so the driver can kill it for real."""
    return ray.get_runtime_context().get_node_id(), os.getpid()


def bounded_get(refs, timeout_s: float, doing: str):
    """ray.get with a bound, turning Ray's errors into one-line hetsync errors (the driver and
    the workers both wait through this)."""
    try:
        return ray.get(refs, timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        raise ClusterError(f"timed out after {timeout_s:.0f} s while {doing}") from None
    except ray.exceptions.RayError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, HetsyncError):
            raise cause from e
        text = str(cause if isinstance(cause, Exception) else e).strip().splitlines()
        raise ClusterError(f"{doing} failed: {text[-1] if text else type(e).__name__}") from e


class ServerActor:
    """Async actor: one event loop serialises all updates; waiting workers park on a
    condition that every update and departure notifies.

    It also hosts the data allocator (`allocation`: the Allocator's arguments), whose calls
    are few and brief: the two start, stop and are checkpointed together, and one process
    for both is one PyTorch import fewer for every run to wait for."""

    def __init__(self, timeout_s: float, state: dict | None = None,
                 allocation: dict | None = None, allocation_state: dict | None = None,
                 **kwargs: Any):
        self.ps = ParameterServer(**kwargs)
        if state is not None:
            self.ps.load_state_dict(state)
        self.allocator = Allocator(**allocation) if allocation is not None else None
        if allocation_state is not None:
            self.allocator.load_state_dict(allocation_state)
        self.timeout_s = timeout_s
        self.changed = asyncio.Condition()

    async def ready(self) -> tuple[str, int]:
        return whereabouts()

    async def _wait_for(self, predicate, who) -> None:
        async with self.changed:
            try:
                await asyncio.wait_for(self.changed.wait_for(predicate), self.timeout_s)
            except asyncio.TimeoutError:
                raise ClusterError(f"timed out after {self.timeout_s:.0f} s: {who()}") from None

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def join(self, worker: int) -> Reply:
        reply = self.ps.join(worker)
        await self._notify()
        return reply

    async def push(self, worker: int, contributions: list[Contribution]) -> Reply:
        for clock, version, payload, samples, loss, steps, accuracy in contributions:
            self.ps.submit(worker, clock, version, payload, samples, loss, steps, accuracy)
        await self._notify()
        # BSP: returns once the barrier round holding the last contribution is applied.
        last = contributions[-1][0]
        await self._wait_for(lambda: self.ps.is_applied(worker, last),
                             lambda: self.ps.controller.blocker_report(worker, last))
        return self.ps.reply(worker, want=len(contributions))

    async def wait_until_allowed(self, worker: int, clock: int) -> Reply:
        await self._wait_for(lambda: self.ps.may_start(worker, clock).proceed,
                             lambda: self.ps.controller.blocker_report(worker, clock))
        return self.ps.reply(worker, want=0)

    async def leave(self, worker: int) -> None:
        self.ps.leave(worker)
        await self._notify()

    async def status(self) -> dict:
        return self.ps.status()

    async def take_snapshots(self) -> list[Snapshot]:
        return self.ps.take_snapshots()

    async def weights(self) -> np.ndarray:
        return self.ps.weights()

    async def state_dict(self) -> dict:
        return self.ps.state_dict()

    # ------------------------------------------------------------------ the data allocator
    async def next_chunk(self, worker: int, samples: int, seconds: float) -> Chunk:
        self.allocator.report(worker, samples, seconds)
        return self.allocator.next_chunk(worker)

    async def give_back(self, worker: int, indices: np.ndarray, epoch: int) -> None:
        self.allocator.give_back(worker, indices, epoch)

    async def lose(self, worker: int) -> None:
        """A worker's process died: it holds no one back, and its data goes back to the pool."""
        self.ps.leave(worker)
        self.allocator.lose(worker)
        await self._notify()

    async def readmit(self, worker: int) -> None:
        self.allocator.join(worker)

    async def allocation_state(self) -> dict:
        return self.allocator.state_dict()

    async def allocation_changes(self, since: int) -> list[dict]:
        return self.allocator.changes[since:]


class RayServerClient:
    """The worker loop's view of the server actor. (A push thread was measured and rejected:
    it contends for the GIL with the compute thread and made iterations slower, not faster.)"""

    def __init__(self, handle, timeout_s: float):
        self.handle = handle
        self.timeout_s = timeout_s

    def get(self, ref) -> Reply:
        return bounded_get(ref, self.timeout_s, "waiting for the parameter server")

    def join(self, worker: int) -> Reply:
        return self.get(self.handle.join.remote(worker))

    def push(self, worker: int, contributions: list[Contribution]):
        return self.handle.push.remote(worker, contributions)

    def wait_until_allowed(self, worker: int, clock: int):
        return self.handle.wait_until_allowed.remote(worker, clock)

    def leave(self, worker: int) -> None:
        self.get(self.handle.leave.remote(worker))


class RayAllocatorClient:
    def __init__(self, handle, timeout_s: float):
        self.handle = handle
        self.timeout_s = timeout_s

    def next_chunk(self, worker: int, samples: int, seconds: float):
        return self.handle.next_chunk.remote(worker, samples, seconds)

    def give_back(self, worker: int, indices: np.ndarray, epoch: int) -> None:
        self.get(self.handle.give_back.remote(worker, indices, epoch))

    def get(self, ref) -> Chunk:
        return bounded_get(ref, self.timeout_s, "waiting for the data allocator")


class WorkerActor:
    def __init__(self, **kwargs: Any):
        self.worker = Worker(**kwargs)

    def ready(self) -> tuple[str, int]:
        return whereabouts()

    def run(self, server, bound: int | None, timeout_s: float, local_steps: int,
            push_every: int, overlap: bool, cpu_hog: bool = False) -> WorkerReport:
        with CpuHog(self.worker.id) if cpu_hog else contextlib.nullcontext():
            return run_worker(self.worker, RayServerClient(server, timeout_s),
                              RayAllocatorClient(server, timeout_s), bound, local_steps,
                              push_every, overlap)


def remote_server(**kwargs: Any):
    # num_cpus=0: the server is light; CPUs are reserved for the workers.
    return ray.remote(num_cpus=0)(ServerActor).remote(**kwargs)


def remote_worker(threads: int, max_restarts: int = 0, **kwargs: Any):
    """A worker whose process Ray restarts up to `max_restarts` times if it dies (its
    constructor runs again; the driver then sends it back to work)."""
    return ray.remote(num_cpus=threads, max_restarts=max_restarts)(WorkerActor).remote(
        threads=threads, **kwargs)

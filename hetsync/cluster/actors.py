"""Thin actors around the plain objects, made remote here and nowhere else.

The server actor hosts the parameter server and the data allocator in one process (they
start, stop and are checkpointed together, and one process for both is one PyTorch import
fewer for every run to wait for); they share one `Membership`. Each wait is bounded by the
run's timeout and, when it expires, names the worker that is late.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any

import numpy as np
import ray
import torch

from hetsync.cluster.clients import RayAllocatorClient, RayServerClient
from hetsync.core.consistency import Membership
from hetsync.core.devices import choose_device
from hetsync.core.partitioning import Allocator, Chunk
from hetsync.core.server import Awaiting, ParameterServer
from hetsync.core.wire import Contribution, Reply, Snapshot, Status
from hetsync.core.worker import PushPolicy, Worker, WorkerReport, run_worker
from hetsync.emulation import CpuHog
from hetsync.errors import ClusterError, HetsyncError


def whereabouts() -> tuple[str, int]:
    """(node id, process id) of the calling process, so the driver can kill it for real."""
    return ray.get_runtime_context().get_node_id(), os.getpid()


class ServerActor:
    """Async actor: one event loop serialises all updates; waiting workers park on a
    condition that every update and departure notifies."""

    def __init__(self, timeout_s: float, server: dict[str, Any], allocation: dict[str, Any],
                 state: dict | None = None, allocation_state: dict | None = None):
        members = Membership(server["workers"])
        self.ps = ParameterServer(**server, members=members)
        self.allocator = Allocator(**allocation, members=members)
        if state is not None:
            self.ps.load_state_dict(state)
        if allocation_state is not None:
            self.allocator.load_state_dict(allocation_state)
        self.timeout_s = timeout_s
        self.changed = asyncio.Condition()

    async def ready(self) -> tuple[str, int]:
        return whereabouts()

    async def cpu_seconds(self) -> float:
        """This process's CPU time so far (every thread), for measuring what a push costs."""
        return time.process_time()

    async def _settle(self, awaiting: Awaiting) -> Reply:
        """Wait until the call may be answered; the reply says how long that took, so that
        the worker counts it as waiting (a BSP round, the gate), not as communication."""
        waited = 0.0
        async with self.changed:
            self.changed.notify_all()  # what the call changed may free others
            if not awaiting.ready():
                t0 = time.perf_counter()
                try:
                    await asyncio.wait_for(self.changed.wait_for(awaiting.ready),
                                           self.timeout_s)
                except TimeoutError:
                    raise ClusterError(f"timed out after {self.timeout_s:.0f} s: "
                                       f"{awaiting.blocker()}") from None
                waited = time.perf_counter() - t0
        reply = awaiting.reply()
        return reply._replace(waited_s=waited) if waited else reply

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def join(self, worker: int) -> Reply:
        reply = self.ps.join(worker)
        await self._notify()
        return reply

    async def push(self, worker: int, contributions: list[Contribution]) -> Reply:
        return await self._settle(self.ps.push(worker, contributions))

    async def wait_until_allowed(self, worker: int, clock: int) -> Reply:
        return await self._settle(self.ps.wait_until_allowed(worker, clock))

    async def leave(self, worker: int) -> None:
        self.ps.leave(worker)
        await self._notify()

    async def lose(self, worker: int) -> None:
        """A worker's process died: it holds no one back, and its data goes back to the pool."""
        self.ps.leave(worker)
        self.allocator.reclaim(worker)
        await self._notify()

    async def status(self) -> Status:
        return self.ps.status()

    async def take_snapshots(self) -> list[Snapshot]:
        return self.ps.take_snapshots()

    async def final(self) -> Snapshot:
        return self.ps.snapshot()

    async def state_dict(self) -> dict:
        # The allocator first: data handed out after its state was taken is handed out again
        # on resume (trained twice at worst), where the other order could skip samples.
        return {"allocator": self.allocator.state_dict(), "server": self.ps.state_dict()}

    # ------------------------------------------------------------------ the data allocator
    async def next_chunk(self, worker: int, samples: int, seconds: float) -> Chunk:
        self.allocator.report(worker, samples, seconds)
        return self.allocator.next_chunk(worker)

    async def give_back(self, worker: int, indices: np.ndarray, epoch: int) -> None:
        self.allocator.give_back(worker, indices, epoch)

    async def allocation_changes(self, since: int) -> list[dict]:
        return self.allocator.changes[since:]


class WorkerActor:
    def __init__(self, device: str = "cpu", **kwargs: Any):
        """`device` as asked for (auto, cpu, cuda): what it becomes depends on the GPUs Ray
        gave this process. A device that cannot be had is raised by `ready`, so that the
        driver reports it as one line rather than as an actor that died starting."""
        self.failed: HetsyncError | None = None
        try:
            chosen = choose_device(device, ray.get_gpu_ids(), torch.cuda.is_available(),
                                   kwargs.get("worker_id", 0))
        except HetsyncError as e:
            self.failed = e
            return
        self.worker = Worker(device=chosen, **kwargs)

    def ready(self) -> tuple[str, int]:
        if self.failed is not None:
            raise self.failed
        return whereabouts()

    def run(self, server, bound: int | None, timeout_s: float, policy: PushPolicy,
            cpu_hog: bool = False) -> WorkerReport:
        with CpuHog(self.worker.id) if cpu_hog else contextlib.nullcontext():
            return run_worker(self.worker, RayServerClient(server, timeout_s),
                              RayAllocatorClient(server, timeout_s), bound, policy)


def remote_server(**kwargs: Any):
    # num_cpus=0: the server is light; CPUs are reserved for the workers.
    return ray.remote(num_cpus=0)(ServerActor).remote(**kwargs)


def remote_worker(threads: int, max_restarts: int = 0, gpus: float = 0.0, **kwargs: Any):
    """A worker whose process Ray restarts up to `max_restarts` times if it dies (its
    constructor runs again; the driver then sends it back to work). With `gpus` Ray places
    it where a GPU (or that fraction of one) is free and makes only that GPU visible to it."""
    return ray.remote(num_cpus=threads, num_gpus=gpus, max_restarts=max_restarts)(
        WorkerActor).remote(threads=threads, **kwargs)

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
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import ray
import torch

from hetsync.cluster.clients import RayAllocatorClient, RayServerClient
from hetsync.cluster.transport import GlooServerClient, PairAddress, PairServer
from hetsync.core.consistency import Membership
from hetsync.core.devices import choose_device
from hetsync.core.partitioning import Allocator, Chunk
from hetsync.core.server import Awaiting, ParameterServer
from hetsync.core.wire import Contribution, Frame, Reply, Snapshot, Status
from hetsync.core.worker import PushPolicy, Worker, WorkerReport, run_worker
from hetsync.emulation import CpuHog
from hetsync.errors import ClusterError, HetsyncError


def whereabouts() -> tuple[str, int]:
    """(node id, process id) of the calling process, so the driver can kill it for real."""
    return ray.get_runtime_context().get_node_id(), os.getpid()


class ServerActor:
    """Async actor around the parameter server and the allocator. Calls arrive on two paths:
    Ray calls on the event loop, and the gloo pairs' threads (`transport.py`); one lock
    guards the state for both, and every change wakes the waiters of both (a condition per
    path). A wait is bounded by the run's timeout and, when it expires, names who is late."""

    def __init__(self, timeout_s: float, server: dict[str, Any],
                 allocation: dict[str, Any] | None, state: dict | None = None,
                 allocation_state: dict | None = None):
        """`allocation`: the allocator's settings on the shard that hosts it (shard 0), None on
        the others."""
        members = Membership(server["workers"])
        self.ps = ParameterServer(**server, members=members)
        self.allocator = (Allocator(**allocation, members=members) if allocation is not None
                          else None)
        if state is not None:
            self.ps.load_state_dict(state)
        if allocation_state is not None:
            self.allocator.load_state_dict(allocation_state)
        self.timeout_s = timeout_s
        self.lock = threading.Lock()
        self.cv = threading.Condition(self.lock)  # the pairs' threads wait on it
        self.changed = asyncio.Condition()  # Ray calls wait on it
        self.loop: asyncio.AbstractEventLoop | None = None  # the actor's, from its first wait
        self.async_waiters = 0
        self.pairs: PairServer | None = None

    async def ready(self) -> tuple[str, int]:
        """(node id, pid) of this process once its constructor (and any checkpoint load) has run;
        the driver waits on it at start and keeps it to kill the process for real."""
        return whereabouts()

    async def cpu_seconds(self) -> float:
        """This process's CPU time so far (every thread), for measuring what a push costs."""
        return time.process_time()

    def _changed(self) -> None:
        """Wake every waiter (the lock held): what just changed may free them."""
        self.cv.notify_all()
        if self.async_waiters and self.loop is not None:
            self.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._notify()))

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    def _locked(self, predicate: Callable[[], bool]) -> Callable[[], bool]:
        def check() -> bool:
            with self.lock:
                return predicate()
        return check

    def _timed_out(self, awaiting: Awaiting) -> ClusterError:
        return ClusterError(f"timed out after {self.timeout_s:.0f} s: {awaiting.blocker()}")

    async def _settle(self, request: Callable[[], Awaiting]) -> Reply:
        """Make the request, wait until it may be answered; the reply says how long that
        took, so that the worker counts it as waiting (a BSP round, the gate), not as
        communication."""
        with self.lock:
            awaiting = request()
            self._changed()
            if awaiting.ready():
                return awaiting.reply()
        t0 = time.perf_counter()
        self.loop = asyncio.get_running_loop()  # where the pairs' threads wake Ray waiters
        # Counted outside the lock: a missed wake-up is harmless, since `wait_for` checks its
        # predicate under the lock before it sleeps.
        self.async_waiters += 1
        try:
            async with self.changed:
                await asyncio.wait_for(self.changed.wait_for(self._locked(awaiting.ready)),
                                       self.timeout_s)
        except TimeoutError:
            with self.lock:
                raise self._timed_out(awaiting) from None
        finally:
            self.async_waiters -= 1
        with self.lock:
            return awaiting.reply()._replace(waited_s=time.perf_counter() - t0)

    def _serve_pair(self, worker: int, contributions: list[Contribution] | None, clock: int,
                    frame: Frame) -> None:
        """A pair's thread: apply a push (or a wait for `clock`), wait as `_settle` does, and
        copy the reply into `frame` under the lock (its weights are views)."""
        with self.cv:
            awaiting = (self.ps.push(worker, contributions) if contributions
                        else self.ps.wait_until_allowed(worker, clock))
            self._changed()
            waited = 0.0
            if not awaiting.ready():
                t0 = time.perf_counter()
                if not self.cv.wait_for(awaiting.ready, self.timeout_s):
                    raise self._timed_out(awaiting)
                waited = time.perf_counter() - t0
            frame.write_reply(awaiting.reply(copy=False)._replace(waited_s=waited))

    async def open_pair(self, worker: int, node: str | None = None, pid: int = 0) -> PairAddress:
        """The data plane's pair for `worker` (`transport.py`), served by a thread here; its
        frames in shared memory if the worker (process `pid`) is on this Ray `node`."""
        if self.pairs is None:
            buffers = 0 if self.ps.buffers is None else len(self.ps.buffers)
            self.pairs = PairServer(self.ps.w.numel(), buffers, self.timeout_s,
                                    self._serve_pair)
        return self.pairs.open(worker, node, pid)

    async def pair_error(self, worker: int) -> None:
        """Raise what stopped the server answering `worker`'s last frame."""
        raise self.pairs.errors.pop(worker, ClusterError("no error was recorded"))

    async def pair_connect_seconds(self) -> list[float]:
        """Seconds each gloo pair took to build, for `hetsync bench capacity`; empty before the
        first pair and under the Ray transport."""
        return [] if self.pairs is None else list(self.pairs.connect_s)

    def _change(self, action: Callable[[], Any]) -> Any:
        with self.lock:
            result = action()
            self._changed()
            return result

    async def join(self, worker: int) -> Reply:
        """(Re)admit `worker` and reply at once (joining never waits): the weights, the clock it
        goes on from and a lease of tickets."""
        return self._change(lambda: self.ps.join(worker))

    async def push(self, worker: int, contributions: list[Contribution]) -> Reply:
        """Apply a push that came as a Ray call; replies once it is applied (under BSP, once its
        round closes), or raises `ClusterError` naming who is late after the run's timeout."""
        return await self._settle(lambda: self.ps.push(worker, contributions))

    async def wait_until_allowed(self, worker: int, clock: int) -> Reply:
        """Reply, with fresh weights, once iteration `clock` may start; bounded as `push` is."""
        return await self._settle(lambda: self.ps.wait_until_allowed(worker, clock))

    async def leave(self, worker: int) -> None:
        """`worker` finished: it holds no one back and its unused tickets return to the budget
        (its unconsumed data came back through `give_back`)."""
        self._change(lambda: self.ps.leave(worker))

    async def lose(self, worker: int) -> None:
        """A worker's process died: it holds no one back, and its data goes back to the pool."""
        def lost() -> None:
            self.ps.leave(worker)
            if self.allocator is not None:
                self.allocator.reclaim(worker)
        self._change(lost)

    async def status(self) -> Status:
        """The server's counters now (`ParameterServer.status`)."""
        with self.lock:
            return self.ps.status()

    async def poll(self, since: int) -> tuple[Status, list[Snapshot], list[dict]]:
        """What the driver reads every poll, in one call rather than three (a Ray call costs
        about a millisecond of CPU on each side): the status, the snapshots taken since the
        last poll, and the allocator's changes from index `since` on."""
        with self.lock:
            return (self.ps.status(), self.ps.take_snapshots(),
                    self.allocator.changes[since:] if self.allocator is not None else [])

    async def final(self) -> Snapshot:
        """The weights and buffers now, as a snapshot: the run's final model once the workers are
        done."""
        with self.lock:
            return self.ps.snapshot()

    async def checkpoint_state(self) -> tuple[dict, list[Snapshot]]:
        """This process's part of a checkpoint, `{allocator, server}`, and the snapshots taken
        since the last poll, under one hold of the lock: a snapshot taken after that poll is
        behind the state's next one, so a resume would never take it again."""
        # The allocator first: data handed out after its state was taken is handed out again
        # on resume (trained twice at worst), where the other order could skip samples.
        with self.lock:
            allocator = self.allocator.state_dict() if self.allocator is not None else None
            return {"allocator": allocator, "server": self.ps.state_dict()}, \
                self.ps.take_snapshots()

    # ------------------------------------------------------------------ the data allocator
    async def next_chunk(self, worker: int, samples: int, seconds: float, timed: int) -> Chunk:
        """Record what `worker` consumed since its last request and its speed (`timed` samples
        in `seconds`; IDPA may rebalance on it), then hand it its next chunk."""
        with self.lock:
            self.allocator.report(worker, samples, seconds, timed)
            return self.allocator.next_chunk(worker)

    async def give_back(self, worker: int, indices: np.ndarray, epoch: int) -> None:
        """Unconsumed `indices` of `epoch` go back to the front of the pool (dropped if that
        epoch is over)."""
        with self.lock:
            self.allocator.give_back(worker, indices, epoch)


class WorkerActor:
    """A `Worker` made remote; `run` trains it against the server, and again after Ray restarts
    its process (the constructor then runs anew)."""

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
        """(node id, pid) once started; raises the device error the constructor kept, so that the
        driver reports it as one line."""
        if self.failed is not None:
            raise self.failed
        return whereabouts()

    def run(self, servers: list, bound: int | None, timeout_s: float, policy: PushPolicy,
            cpu_hog: bool = False, transport: str = "gloo") -> WorkerReport:
        """Train against the server's shards (shard 0 hosts the allocator) until the
        budget is spent."""
        with contextlib.ExitStack() as stack:
            if cpu_hog:
                stack.enter_context(CpuHog(self.worker.id))
            client = server_client(transport, servers, self.worker.id, timeout_s,
                                   self.worker.flat.landing)
            stack.callback(client.close)
            return run_worker(self.worker, client, RayAllocatorClient(servers[0], timeout_s),
                              bound, policy)


def server_client(transport: str, servers: list, worker: int, timeout_s: float,
                  landing: np.ndarray | None = None):
    """The worker loop's client of the server's shards over the chosen data plane (Ray
    calls reach one shard only: the config refuses shards without gloo). `landing`: the
    replica's weights, where the gloo client copies replies (`GlooServerClient`)."""
    if transport != "ray":  # gloo (frames in shared memory on one node) or gloo-tcp
        return GlooServerClient(servers, worker, timeout_s, shared_memory=transport == "gloo",
                                landing=landing)
    return RayServerClient(servers[0], timeout_s)


def remote_server(**kwargs: Any):
    """Start one server shard as an actor (`ServerActor`'s keyword arguments); returns its handle
    at once, without waiting for the constructor."""
    # num_cpus=0: the server is light; CPUs are reserved for the workers.
    return ray.remote(num_cpus=0)(ServerActor).remote(**kwargs)


def remote_worker(threads: int, max_restarts: int = 0, gpus: float = 0.0, **kwargs: Any):
    """A worker whose process Ray restarts up to `max_restarts` times if it dies (its
    constructor runs again; the driver then sends it back to work). With `gpus` Ray places
    it where a GPU (or that fraction of one) is free and makes only that GPU visible to it."""
    return ray.remote(num_cpus=threads, num_gpus=gpus, max_restarts=max_restarts)(
        WorkerActor).remote(threads=threads, **kwargs)

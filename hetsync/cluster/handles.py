"""The driver's typed handles on the actors: the parameter server (with the allocator it
hosts) and the pool of workers. Every call is bounded by the run's timeout; a dead server
raises `ServerLost`, a dead worker is reported as `WorkerLost`."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import ray

from hetsync.cluster.actors import remote_server, remote_worker
from hetsync.cluster.clients import ActorRestarting, ServerLost, WorkerLost, bounded_get
from hetsync.core.wire import Snapshot, Status
from hetsync.core.worker import PushPolicy, WorkerReport
from hetsync.errors import ClusterError

POLL_S = 0.1


def _sigkill(handle, where: tuple[str, int]) -> None:
    """Fault injection: SIGKILL the actor's process (the real thing, mid-step); on another
    node, where the driver cannot signal it, let Ray kill it."""
    node, pid = where
    if node == ray.get_runtime_context().get_node_id():
        os.kill(pid, signal.SIGKILL)
    else:
        ray.kill(handle, no_restart=False)


def _require_gpus(needed: float) -> None:
    """GPUs the cluster lacks are an error at start: Ray would leave the workers waiting to
    be placed until the timeout."""
    have = ray.cluster_resources().get("GPU", 0) if needed else 0
    if needed > have:
        raise ClusterError(f"the workers ask for {needed:g} GPUs (--device cuda, --worker-gpus) "
                           f"but the Ray cluster has {have:g}" + (
                               "; use --device cpu or auto" if not have else ""))


class ServerHandle:
    """A parameter server actor (and the allocator it hosts), started and waited for."""

    def __init__(self, timeout_s: float, **actor_kwargs: Any):
        self.timeout_s = timeout_s
        self.actor = remote_server(timeout_s=timeout_s, **actor_kwargs)
        self.where = self._ask(self.actor.ready.remote(), "starting the server")

    def _ask(self, ref, doing: str):
        return bounded_get(ref, self.timeout_s, doing, ServerLost)

    def ping(self) -> None:
        """An empty call: what any call costs."""
        self._ask(self.actor.ready.remote(), "calling the server")

    def cpu_seconds(self) -> float:
        return self._ask(self.actor.cpu_seconds.remote(), "asking the server for its CPU time")

    def status(self) -> Status:
        return self._ask(self.actor.status.remote(), "asking the server for status")

    def alive(self) -> bool:
        try:
            self.status()
            return True
        except ServerLost:
            return False

    def take_snapshots(self) -> list[Snapshot]:
        return self._ask(self.actor.take_snapshots.remote(), "taking snapshots")

    def final(self) -> Snapshot:
        return self._ask(self.actor.final.remote(), "fetching the final weights")

    def allocation_changes(self, since: int) -> list[dict]:
        return self._ask(self.actor.allocation_changes.remote(since),
                         "asking the allocator for changes")

    def state_dict(self) -> dict:
        """{"allocator": ..., "server": ...}, for a checkpoint."""
        return self._ask(self.actor.state_dict.remote(), "saving the server's state")

    def lose(self, worker: int) -> None:
        self._ask(self.actor.lose.remote(worker), "removing a lost worker")

    def sigkill(self) -> None:
        _sigkill(self.actor, self.where)

    def kill(self) -> None:
        ray.kill(self.actor)


class WorkerPool:
    """N worker actors and the runs in flight on them. Ray restarts a worker's process up to
    `max_restarts` times; its constructor then runs again and the driver relaunches it."""

    def __init__(self, workers: int, threads: int, max_restarts: int, timeout_s: float,
                 data, pacers: list, gpus: tuple[float, ...] | None = None,
                 **worker_kwargs: Any):
        """`gpus`: what each worker asks Ray for (none: no GPU)."""
        self.timeout_s = timeout_s
        gpus = gpus or (0.0,) * workers
        _require_gpus(sum(gpus))
        # To the object store once, for every worker; held for the run, since a restarted
        # worker's constructor reads it again.
        self.data_ref = ray.put(data)
        self.actors = [remote_worker(threads=threads, max_restarts=max_restarts, gpus=gpus[i],
                                     worker_id=i, data=self.data_ref, pacer=pacers[i],
                                     **worker_kwargs)
                       for i in range(workers)]
        self.runs: dict[Any, int] = {}  # run call in flight -> its worker
        self.where = dict(enumerate(bounded_get([a.ready.remote() for a in self.actors],
                                                timeout_s, "starting the workers")))

    def launch(self, worker: int, server: ServerHandle, bound: int | None, policy: PushPolicy,
               cpu_hog: bool) -> None:
        ref = self.actors[worker].run.remote(server.actor, bound, self.timeout_s, policy,
                                             cpu_hog)
        self.runs[ref] = worker

    def poll(self, timeout_s: float = POLL_S) -> list[tuple[int, WorkerReport | ClusterError]]:
        """The runs that ended within `timeout_s`: each worker's report, or the error that
        ended it (`WorkerLost` if its process died)."""
        if not self.runs:
            return []
        done, _ = ray.wait(list(self.runs), num_returns=len(self.runs), timeout=timeout_s)
        ended = []
        for ref in done:
            worker = self.runs.pop(ref)
            try:
                ended.append((worker, bounded_get(ref, self.timeout_s,
                                                  f"collecting worker {worker}'s report",
                                                  WorkerLost)))
            except ClusterError as e:
                ended.append((worker, e))
        return ended

    def finish_all(self) -> list[tuple[int, WorkerReport | ClusterError]]:
        """Wait (bounded) until every run in flight has ended, as `poll` reports them; a run
        still going after the timeout is reported as a timeout and forgotten."""
        ended = self.poll(self.timeout_s)
        ended += [(w, ClusterError(f"worker {w} did not stop within {self.timeout_s:.0f} s"))
                  for w in self.runs.values()]
        self.runs.clear()
        return ended

    def await_restart(self, worker: int) -> None:
        """Wait for Ray to bring the worker's process back (its constructor runs again)."""
        deadline = time.time() + self.timeout_s
        while True:
            try:
                self.where[worker] = bounded_get(self.actors[worker].ready.remote(),
                                                 self.timeout_s, f"restarting worker {worker}",
                                                 WorkerLost)
                return
            except ActorRestarting:
                if time.time() > deadline:
                    raise
                time.sleep(POLL_S)

    def nodes(self) -> int:
        return len({node for node, _ in self.where.values()})

    def sigkill(self, worker: int) -> None:
        _sigkill(self.actors[worker], self.where[worker])

    def kill(self) -> None:
        for actor in self.actors:
            ray.kill(actor)

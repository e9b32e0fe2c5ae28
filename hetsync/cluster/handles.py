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
from hetsync.core.sharding import (
    SnapshotZipper,
    merge_snapshots,
    merge_states,
    shard_ranges,
    split_state,
)
from hetsync.core.wire import Snapshot, Status
from hetsync.core.worker import PushPolicy, WorkerReport
from hetsync.errors import ClusterError

POLL_S = 0.1
START_S = 120.0  # the least a start may take: a new process imports PyTorch, whatever --timeout


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
    """The parameter server's actors, started and waited for: one per shard
    (`hetsync.core.sharding`), shard 0 hosting the allocator. To the driver it is one
    server: its state and snapshots are the shards' merged, a lost shard is a lost server."""

    def __init__(self, timeout_s: float, server: dict[str, Any], allocation: dict[str, Any],
                 state: dict | None = None, allocation_state: dict | None = None,
                 shards: int = 1):
        self.timeout_s = timeout_s
        weights = server["weights"]
        ranges = shard_ranges(len(weights), shards)
        states = split_state(state, ranges) if state is not None else [None] * shards
        self.actors = []
        for k, (lo, hi) in enumerate(ranges):
            part = dict(server, weights=weights[lo:hi]) if shards > 1 else server
            if k:
                part["buffers"] = None
            self.actors.append(remote_server(
                timeout_s=timeout_s, server=part, allocation=allocation if k == 0 else None,
                state=states[k],
                allocation_state=allocation_state if k == 0 else None))
        self.actor = self.actors[0]
        self.snapshots = SnapshotZipper(shards)
        try:
            where = bounded_get([a.ready.remote() for a in self.actors],
                                max(timeout_s, START_S), "starting the server", ServerLost)
        except ClusterError:
            self.kill()  # no shard outlives a server that did not start
            raise
        self.where, self.shard_where = where[0], where

    def _ask(self, ref, doing: str):
        return bounded_get(ref, self.timeout_s, doing, ServerLost)

    def _all(self, call, doing: str) -> list:
        """The same call on every shard, at once."""
        return self._ask([call(a) for a in self.actors], doing)

    def ping(self) -> None:
        """An empty call: what any call costs."""
        self._ask(self.actor.ready.remote(), "calling the server")

    def cpu_seconds(self) -> float:
        """The shards' CPU time so far, summed."""
        return sum(self._all(lambda a: a.cpu_seconds.remote(),
                             "asking the server for its CPU time"))

    def status(self) -> Status:
        """Shard 0's counters: every shard applies the same pushes, and shard 0 decides the
        budget."""
        return self._ask(self.actor.status.remote(), "asking the server for status")

    def alive(self) -> bool:
        """Whether every shard still answers; False if one's process died (a timeout raises
        `ClusterError` instead)."""
        try:
            self._all(lambda a: a.ready.remote(), "asking whether the server is alive")
            return True
        except ServerLost:
            return False

    def poll(self, since: int) -> tuple[Status, list[Snapshot], list[dict]]:
        """Status, new snapshots (merged across shards) and the allocator's changes from
        index `since` on, in one call per shard."""
        parts = self._all(lambda a: a.poll.remote(since), "polling the server")
        status, _, changes = parts[0]
        return status, self.snapshots.add([p[1] for p in parts]), changes

    def final(self) -> Snapshot:
        """The weights now, every shard's range merged: the run's final model."""
        return merge_snapshots(self._all(lambda a: a.final.remote(),
                                         "fetching the final weights"))

    def checkpoint_state(self) -> tuple[dict, list[Snapshot]]:
        """({"allocator": ..., "server": ...}, the snapshots taken since the last poll), for a
        checkpoint: one state, whatever the number of shards."""
        states, snapshots = zip(*self._all(lambda a: a.checkpoint_state.remote(),
                                           "saving the server's state"), strict=True)
        state = {"allocator": states[0]["allocator"],
                 "server": merge_states([s["server"] for s in states])}
        return state, self.snapshots.add(list(snapshots))

    def lose(self, worker: int) -> None:
        """A worker's process died: on every shard it holds no one back and its tickets return,
        and its unconsumed data goes back to the pool."""
        self._all(lambda a: a.lose.remote(worker), "removing a lost worker")

    def sigkill(self, shard: int = 0) -> None:
        """Fault injection: kill one shard's process as a crash would (SIGKILL on this node,
        ray.kill on another); -1 is the last shard."""
        _sigkill(self.actors[shard], self.shard_where[shard])

    def kill(self) -> None:
        """Stop every shard's process now, the allocator with shard 0; nothing is saved."""
        for actor in self.actors:
            ray.kill(actor)

    def pair_connect_seconds(self) -> list[float]:
        """How long each data-plane pair took to build (`transport.py`), every shard's."""
        return [s for shard in self._all(lambda a: a.pair_connect_seconds.remote(),
                                         "asking the server how long its pairs took")
                for s in shard]


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
                                                max(timeout_s, START_S),
                                                "starting the workers")))

    def launch(self, worker: int, server: ServerHandle, bound: int | None, policy: PushPolicy,
               cpu_hog: bool, transport: str) -> None:
        """Start `worker`'s training run without waiting for it; `poll` reports its end."""
        ref = self.actors[worker].run.remote(server.actors, bound, self.timeout_s, policy,
                                             cpu_hog, transport)
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
        """How many Ray nodes the workers run on (where each last started)."""
        return len({node for node, _ in self.where.values()})

    def sigkill(self, worker: int) -> None:
        """Fault injection: kill `worker`'s process as a crash would; Ray restarts it if it has
        restarts left."""
        _sigkill(self.actors[worker], self.where[worker])

    def kill(self) -> None:
        """Stop every worker's actor for good (no restart), whatever it is doing."""
        for actor in self.actors:
            ray.kill(actor)

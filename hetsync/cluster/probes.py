"""Probes of the data plane itself (`hetsync bench capacity`): clients that compute nothing,
each pushing a fixed gradient and taking the reply as fast as it can, and processes that
stream memory (copies, or a round trip's passes without transport) side by side."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import ray

from hetsync.cluster.actors import server_client
from hetsync.cluster.handles import ServerHandle
from hetsync.core.server import ParameterServer
from hetsync.core.wire import Contribution


class PushProbe:
    """A client that computes nothing: it joins as worker `worker` when built; `run` pushes one
    fixed gradient of `size` values as fast as the replies come."""

    def __init__(self, server, worker: int, size: int, timeout_s: float, transport: str):
        self.client = server_client(transport, [server], worker, timeout_s)
        self.worker = worker
        self.push = Contribution(0, 0, np.full(size, 1e-7, np.float32), 64, 1.0)
        self.clock = self.client.join(worker).clock

    def ready(self) -> bool:
        """True once built, that is once the probe has joined the server."""
        return True

    def run(self, start_at: float, seconds: float) -> tuple[int, float]:
        """Pushes from `start_at` for `seconds`: (pushes, this process's CPU seconds)."""
        time.sleep(max(0.0, start_at - time.time()))
        pushes, cpu = 0, time.process_time()
        while time.time() < start_at + seconds:
            push = self.push._replace(clock=self.clock)
            self.client.get(self.client.push(self.worker, [push]))
            self.clock, pushes = self.clock + 1, pushes + 1
        return pushes, time.process_time() - cpu


class MemoryProbe:
    """A process that streams memory back to back: several at once measure how the memory
    traffic of one holds up when processes share it, as server shards on one node do."""

    def ready(self) -> bool:
        """True once started."""
        return True

    def run(self, size: int, start_at: float, seconds: float) -> float:
        """GB/s (each copied byte once) of copies of `size` floats from `start_at` for
        `seconds`."""
        src = np.ones(size, np.float32)
        dst = np.empty_like(src)
        return _per_second(lambda: np.copyto(dst, src), start_at, seconds) * src.nbytes / 1e9

    def run_round_trips(self, server: dict, start_at: float, seconds: float) -> float:
        """GB/s of push+pull (4 bytes a parameter each way, as `bench capacity` counts a round
        trip) of a round trip's memory passes against a `ParameterServer(**server)` in this
        process, with no transport and no wake-ups: the client's copy of its gradient into
        the push frame, the server's update from that frame (under its rule, with its
        bookkeeping), its copy of the weights into the reply frame, and the client's copy of
        them into its replica (`transport.py`). Processes that run these at once, each
        against a server of 1/K of the parameters, are K shards' best case on a node."""
        ps = ParameterServer(**server)
        clock = ps.join(0).clock
        size = ps.w.numel()
        grad = np.full(size, 1e-7, np.float32)
        push, reply, replica = (np.empty(size, np.float32) for _ in range(3))

        def round_trip() -> None:
            nonlocal clock
            np.copyto(push, grad)
            ps.submit(0, Contribution(clock, ps.version, push, 64, 1.0))
            np.copyto(reply, ps.reply(0, copy=False).weights)
            np.copyto(replica, reply)
            clock += 1

        return _per_second(round_trip, start_at, seconds) * 2 * 4 * size / 1e9


def _per_second(step: Callable[[], None], start_at: float, seconds: float) -> float:
    """How many times a second `step` ran back to back from `start_at` for about `seconds`,
    after one untimed run (which touches every page)."""
    step()
    time.sleep(max(0.0, start_at - time.time()))
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        done += 1
    return done / (time.perf_counter() - t0)


def together_gb_per_s(size: int, processes: int, seconds: float,
                      server: Callable[[int], dict] | None = None,
                      timeout_s: float = 60.0) -> float:
    """The GB/s in all of `processes` processes streaming memory at once (`MemoryProbe`):
    copies of `size` floats each or, given `server` (the `ParameterServer` settings for n
    parameters), round trips' passes against a server of size / processes parameters each, as
    shards split them."""
    probes = [ray.remote(num_cpus=0)(MemoryProbe).remote() for _ in range(processes)]
    try:
        ray.get([p.ready.remote() for p in probes], timeout=timeout_s)
        share = None if server is None else server(-(-size // processes))
        start_at = time.time() + 0.5
        runs = [p.run.remote(size, start_at, seconds) if share is None
                else p.run_round_trips.remote(share, start_at, seconds) for p in probes]
        return sum(ray.get(runs, timeout=seconds + timeout_s))
    finally:
        for p in probes:
            ray.kill(p)


def probe_capacity(server: ServerHandle, clients: int, size: int, seconds: float,
                   transport: str, timeout_s: float = 60.0) -> dict[str, float]:
    """`clients` probes (one process each, workers 0..clients-1 of `server`) push for
    `seconds`: pushes per second in all, and the server's and a client's CPU per push."""
    probes = [ray.remote(num_cpus=0)(PushProbe).remote(server.actor, w, size, timeout_s,
                                                        transport)
              for w in range(clients)]
    try:
        ray.get([p.ready.remote() for p in probes], timeout=timeout_s)  # started and joined
        start_at = time.time() + 0.5
        runs = [p.run.remote(start_at, seconds) for p in probes]
        time.sleep(max(0.0, start_at - time.time()))
        cpu = server.cpu_seconds()
        done = ray.get(runs, timeout=seconds + timeout_s)
        server_cpu = server.cpu_seconds() - cpu
        connect = server.pair_connect_seconds()
    finally:
        for p in probes:
            ray.kill(p)
    pushes = max(1, sum(n for n, _ in done))
    return {"transport": transport, "clients": clients, "pushes_per_s": pushes / seconds,
            "pair_connect_ms": 1000 * max(connect) if connect else None,
            "server_cpu_ms_per_push": 1000 * server_cpu / pushes,
            "client_cpu_ms_per_push": 1000 * sum(c for _, c in done) / pushes}

"""The data plane measured on its own, in one invocation (issue: a data plane at memory
speed): (a) the physical reference, a memory copy of the same bytes and an empty actor call;
(b) the push/pull round trip (a gradient up, the new weights down into a replica's weight
vector, where a worker's land) for 61,706 (LeNet-5),
1 M and 11.2 M (ResNet-18) parameters, with the client's and the server's CPU per push taken
from process CPU time, the server's split into the update (timed in-process) and the rest
(transport); (c) one server's capacity: 1, 2 and 4 clients that compute nothing push LeNet-5
gradients as fast as they can; (b) and (c) on every transport side by side: gloo (the
default, frames in shared memory on one node; the summary keys hold its figures), gloo-tcp
(whole frames through gloo's sockets, as between nodes) and Ray calls; (d) 11.2 M parameters by number of server
shards, K = 1, 2, 4 (gloo), beside the memory copy rate of one and of two processes copying
at once, and a round trip's memory passes without transport on all the parameters in one
process and on half each in two at once (what a second shard can add on one node), all of
them in rounds side by side (`SHARD_ROUNDS`); (e) what Ray's own
processes (GCS, raylet, autoscaler monitor, dashboard head and agent, runtime-env agent, log
monitor) cost: their CPU while a 4-worker run trains, from /proc (Linux).

Writes results.csv, report.md, a chart and summary.json (keys read by other tools)."""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from hetsync.bench.harness import Bench, Budget, save, write
from hetsync.cluster.actors import server_client
from hetsync.cluster.handles import ServerHandle
from hetsync.cluster.probes import probe_capacity, together_gb_per_s
from hetsync.cluster.runtime import ray_session
from hetsync.config import TRANSPORTS
from hetsync.core.server import ParameterServer
from hetsync.core.wire import Contribution

DEFAULT = TRANSPORTS[0]  # the summary's keys are the default's (gloo) figures
SIZES = {"lenet5": 61_706, "1m": 1_000_000, "11m": 11_172_810}
KEYS = ("memcpy_gb_per_s", "empty_call_ms", "round_trip_ms_lenet5",
        "server_cpu_ms_per_push_lenet5", "worker_cpu_ms_per_push_lenet5",
        "pushes_per_s_one_shard_lenet5", "push_pull_gb_per_s_11m_k1",
        "push_pull_gb_per_s_11m_k2", "push_pull_gb_per_s_11m_k4", "server_update_gb_per_s_11m",
        "memcpy_sustained_gb_per_s_1_process", "memcpy_sustained_gb_per_s_2_processes",
        "round_trip_passes_gb_per_s_11m_k1", "round_trip_passes_gb_per_s_11m_k2")
BUDGETS = (Budget(600, 0.9, 1, evaluations=1), Budget(3000, 0.97, 1, evaluations=1))  # (e)
RUN_SETTINGS = ()  # the data plane at fixed sizes: no run settings apply
SHARD_ROUNDS = (1, 4)  # (quick, full): rounds of (d), each K and reference side by side
UPDATE_BYTES_PER_PARAM = 20  # SGD with momentum reads g, buf, w and writes buf, w: 5 x 4 bytes


def _server_args(size: int, workers: int) -> dict:
    return dict(server=dict(weights=np.zeros(size, np.float32), workers=workers, bound=None,
                            barrier=False, lr=0.01, momentum=0.5, batch_size=64,
                            iterations=10**9, eval_every=10**9),
                allocation=dict(n_samples=64, workers=workers, batch_size=64, mode="uniform",
                                seed=0))


def memcpy_gb_per_s(size: int, repeats: int = 20) -> float:
    """Each copied byte counted once; the best of `repeats` copies."""
    src = np.ones(size, np.float32)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return src.nbytes / best / 1e9


@contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread, as in the actors (Ray starts them with one): with more, idle
    OpenMP threads spin after each copy and take the core the server needs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def update_s(size: int, calls: int) -> float:
    """Seconds per SGD update of the parameter server on `size` parameters, in-process, on
    one thread as in the server actor."""
    with one_thread():
        return _update_s(size, calls)


def _update_s(size: int, calls: int) -> float:
    ps = ParameterServer(**_server_args(size, 1)["server"])
    ps.join(0)
    grad = np.full(size, 1e-7, np.float32)
    grad.flags.writeable = False  # as pushes arrive
    for i in range(2):
        ps.submit(0, Contribution(i, i, grad, 64, 1.0))
    t0 = time.perf_counter()
    for i in range(calls):
        ps.submit(0, Contribution(i, i, grad, 64, 1.0))
    return (time.perf_counter() - t0) / calls


def round_trip(size: int, calls: int, transport: str, shards: int = 1,
               with_update: bool = True) -> dict[str, float]:
    """One client (this process, on one thread as a worker) against the server's shards;
    `with_update` adds the server's update timed in-process, to split its CPU per push."""
    with one_thread():
        return _round_trip(size, calls, transport, shards, with_update)


def _round_trip(size: int, calls: int, transport: str, shards: int,
                with_update: bool) -> dict[str, float]:
    server = ServerHandle(60.0, **_server_args(size, 1), shards=shards)
    # The replies end in a replica's weights, as a worker's do: copied there by the gloo
    # client (FlatModel.landing), else by the worker's load (Worker.load), as here
    replica = np.zeros(size, np.float32)
    client = server_client(transport, server.actors, 0, 60.0, replica)
    push = Contribution(0, 0, np.full(size, 1e-7, np.float32), 64, 1.0)

    def exchange(clock: int) -> None:
        weights = client.get(client.push(0, [push._replace(clock=clock)])).weights
        if weights is not replica:
            np.copyto(replica, weights)

    try:
        clock = client.join(0).clock
        for _ in range(3):
            exchange(clock)
            clock += 1
        cpu, server_cpu, t0 = time.process_time(), server.cpu_seconds(), time.perf_counter()
        for _ in range(calls):
            exchange(clock)
            clock += 1
        total = (time.perf_counter() - t0) / calls
        worker_cpu = (time.process_time() - cpu) / calls
        server_cpu = (server.cpu_seconds() - server_cpu) / calls
    finally:
        client.close()
        server.kill()
    trip = {"transport": transport, "shards": shards, "params": size,
            "round_trip_ms": 1000 * total,
            "worker_cpu_ms_per_push": 1000 * worker_cpu,
            "server_cpu_ms_per_push": 1000 * server_cpu,
            "push_pull_gb_per_s": 2 * 4 * size / total / 1e9}
    if not with_update:
        return trip
    update = update_s(size, max(3, calls // 3))
    return {**trip, "server_update_ms": 1000 * update,
            "server_transport_cpu_ms": 1000 * max(0.0, server_cpu - update),
            "update_gb_per_s": UPDATE_BYTES_PER_PARAM * size / update / 1e9}


RAY_PROCESSES = ("gcs_server", "raylet", "autoscaler/_private/monitor.py", "log_monitor.py",
                 "dashboard/dashboard.py", "DashboardAgent", "RuntimeEnvAgent")


def _process_cpu() -> dict[str, float]:
    """CPU seconds so far of each of Ray's own processes on this machine, by kind."""
    tick, found = os.sysconf("SC_CLK_TCK"), {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kind = next((k for k in RAY_PROCESSES if k in cmd), None)
        if kind is not None:
            found[kind] = found.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return found


def ray_processes(b: Bench) -> dict[str, float]:
    """Cores each kind of Ray process takes while 4 workers train (LeNet-5, mnist-10k)."""
    from hetsync.run.train import train

    before = _process_cpu()
    s = train(b.config(workers=4, speeds=(1, 1, 2, 4), allocation="idpa")).summary
    after = _process_cpu()
    return {k: (after.get(k, 0.0) - before.get(k, 0.0)) / s["wall_time_s"] for k in after}


def run(b: Bench) -> list[Path]:
    """Measures (a) to (e) of the module docstring: the memory copy first, the rest on one local
    Ray instance. Returns the files written: summary.json, the chart and report.md."""
    calls = {"lenet5": 100, "1m": 30, "11m": 6} if b.quick else {"lenet5": 400, "1m": 100,
                                                                 "11m": 20}
    seconds = 2.0 if b.quick else 5.0
    summary: dict[str, float | None] = {"memcpy_gb_per_s": memcpy_gb_per_s(SIZES["11m"])}
    b.rows.append({"suite": "capacity", "part": "reference", "case": "memcpy 11.2 M floats",
                   "gb_per_s": summary["memcpy_gb_per_s"]})
    trips, capacity = {}, []
    with ray_session(None, cpus=4):  # (e) trains 4 workers
        server = ServerHandle(60.0, **_server_args(SIZES["lenet5"], 1))
        try:
            for _ in range(10):
                server.ping()
            t0 = time.perf_counter()
            for _ in range(200):
                server.ping()
            summary["empty_call_ms"] = 1000 * (time.perf_counter() - t0) / 200
        finally:
            server.kill()
        b.rows.append({"suite": "capacity", "part": "reference", "case": "empty actor call",
                       "ms": summary["empty_call_ms"]})
        for transport in TRANSPORTS:  # side by side, the default first
            for name, size in SIZES.items():
                trips[transport, name] = round_trip(size, calls[name], transport)
                b.rows.append({"suite": "capacity", "part": "round trip", "case": name,
                               **trips[transport, name]})
                print(b.rows[-1], flush=True)
            for clients in (1, 2, 4):
                server = ServerHandle(60.0, **_server_args(SIZES["lenet5"], clients))
                try:
                    capacity.append(probe_capacity(server, clients, SIZES["lenet5"], seconds,
                                                   transport))
                finally:
                    server.kill()
                b.rows.append({"suite": "capacity", "part": "one shard, lenet5",
                               "case": f"{clients} clients", **capacity[-1]})
                print(b.rows[-1], flush=True)
        shard_rounds = _by_shards(b, calls["11m"], seconds)
        cores = ray_processes(b) if Path("/proc/self/stat").exists() else {}
        for kind, share in cores.items():
            b.rows.append({"suite": "capacity", "part": "Ray's processes", "case": kind,
                           "cores_while_training": share})
    lenet, big = trips[DEFAULT, "lenet5"], trips[DEFAULT, "11m"]
    summary.update({
        "round_trip_ms_lenet5": lenet["round_trip_ms"],
        "server_cpu_ms_per_push_lenet5": lenet["server_cpu_ms_per_push"],
        "worker_cpu_ms_per_push_lenet5": lenet["worker_cpu_ms_per_push"],
        "pushes_per_s_one_shard_lenet5": max(c["pushes_per_s"] for c in capacity
                                             if c["transport"] == DEFAULT),
        "server_update_gb_per_s_11m": big["update_gb_per_s"],
        **{key: statistics.fmean(r[key] for r in shard_rounds) for key in shard_rounds[0]},
    })
    summary = {k: summary[k] for k in KEYS}
    (b.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return [b.out / "summary.json", _chart(b, trips, capacity),
            write(b.out / "report.md", _report(b, summary, trips, capacity, cores,
                                               shard_rounds))]


def _by_shards(b: Bench, calls: int, seconds: float) -> list[dict[str, float]]:
    """(d) in SHARD_ROUNDS rounds, each measuring K = 1, 2 and 4 and the memory references
    one after the other, so that a ratio compares measurements minutes apart at most (this
    machine's copy rate of two processes over one read 1.15x to 1.79x across invocations
    of one day): per round, summary.json's shard and memory keys."""
    rounds = []
    for i in range(SHARD_ROUNDS[not b.quick]):
        got: dict[str, float] = {}
        for shards in (1, 2, 4):
            trip = round_trip(SIZES["11m"], calls, DEFAULT, shards, with_update=False)
            got[f"push_pull_gb_per_s_11m_k{shards}"] = trip["push_pull_gb_per_s"]
            b.rows.append({"suite": "capacity", "part": "11m by shards", "case": f"K={shards}",
                           "round": i, **trip})
            print(b.rows[-1], flush=True)
        for processes in (1, 2):
            key = f"memcpy_sustained_gb_per_s_{processes}_process" + "es" * (processes > 1)
            got[key] = together_gb_per_s(SIZES["11m"], processes, seconds)
            b.rows.append({"suite": "capacity", "part": "11m by shards", "round": i,
                           "case": f"memcpy, {processes} at once", "gb_per_s": got[key]})
            key = f"round_trip_passes_gb_per_s_11m_k{processes}"
            got[key] = together_gb_per_s(SIZES["11m"], processes, seconds,
                                         server=lambda n: _server_args(n, 1)["server"])
            b.rows.append({"suite": "capacity", "part": "11m by shards", "round": i,
                           "case": f"round trips' passes, K={processes}",
                           "push_pull_gb_per_s": got[key]})
        rounds.append(got)
    return rounds


def _chart(b: Bench, trips: dict, capacity: list[dict]) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(TRANSPORTS)
    for i, transport in enumerate(TRANSPORTS):
        axes[0].bar(np.arange(len(SIZES)) + i * width,
                    [trips[transport, n]["round_trip_ms"] for n in SIZES], width,
                    label=transport)
        mine = [c for c in capacity if c["transport"] == transport]
        axes[1].bar(np.arange(len(mine)) + i * width, [c["pushes_per_s"] for c in mine],
                    width, label=transport)
    middle = width * (len(TRANSPORTS) - 1) / 2
    axes[0].set_xticks(np.arange(len(SIZES)) + middle, list(SIZES))
    axes[0].set_yscale("log")
    axes[0].set_ylabel("ms per push/pull round trip (log)")
    axes[0].set_title("round trip by model size, one server")
    axes[1].set_xticks(np.arange(3) + middle, ["1", "2", "4"])
    axes[1].set_xlabel("clients pushing LeNet-5 gradients")
    axes[1].set_ylabel("pushes/s, one server")
    axes[1].set_title("one server's capacity")
    for ax in axes:
        ax.legend(title="transport")
    return save(fig, b.out / "capacity.png")


def _report(b: Bench, summary: dict, trips: dict, capacity: list[dict],
            cores: dict[str, float], rounds: list[dict[str, float]]) -> str:
    def fmt(v: float | None, d: int = 2, none: str = "not measured"):
        return none if v is None else f"{v:.{d}f}"

    def by_round(a: str, over: str) -> str:
        return ", ".join(f"{r[a] / r[over]:.2f}x" for r in rounds)

    one = summary["memcpy_sustained_gb_per_s_1_process"]
    two = summary["memcpy_sustained_gb_per_s_2_processes"]
    passes = [summary[f"round_trip_passes_gb_per_s_11m_k{k}"] for k in (1, 2)]
    k1 = summary["push_pull_gb_per_s_11m_k1"]

    return (b.header("hetsync bench capacity")
            + "## Reference\n\n"
            f"- memory copy of 11.2 M floats: {summary['memcpy_gb_per_s']:.2f} GB/s (each "
            "copied byte counted once)\n"
            f"- empty actor call: {summary['empty_call_ms']:.3f} ms\n\n"
            "## Round trip, one client, one server\n\n"
            "| transport | parameters | round trip (ms) | client CPU / push (ms) | server CPU / push (ms) "
            "| of which update (ms) | of which transport (ms) | push+pull GB/s | update GB/s "
            "(20 bytes/param) |\n|---|---|---|---|---|---|---|---|---|\n"
            + "".join(f"| {t['transport']} | {t['params']:,} | {t['round_trip_ms']:.2f} | "
                      f"{t['worker_cpu_ms_per_push']:.2f} | {t['server_cpu_ms_per_push']:.2f} | "
                      f"{t['server_update_ms']:.2f} | {t['server_transport_cpu_ms']:.2f} | "
                      f"{t['push_pull_gb_per_s']:.2f} | {t['update_gb_per_s']:.2f} |\n"
                      for t in trips.values())
            + "\nA round trip ends with the new weights in a replica's weight vector, as a "
            "worker takes them (copied there by the gloo client, `FlatModel.landing`, or "
            "after a Ray call as `Worker.load` does), not with a view of the reply frame. "
            "CPU per push comes from each process's CPU time (every thread), so the "
            "client's includes Ray's own threads in it; transport is the server's CPU per push "
            "less its update timed in-process.\n\n## One server's capacity (LeNet-5 pushes)\n\n"
            "| transport | clients | pushes/s | server CPU / push (ms) | client CPU / push (ms) "
            "| slowest pair connect (ms) |\n|---|---|---|---|---|---|\n"
            + "".join(f"| {c['transport']} | {c['clients']} | {c['pushes_per_s']:.0f} | "
                      f"{c['server_cpu_ms_per_push']:.3f} | {c['client_cpu_ms_per_push']:.3f} | "
                      f"{fmt(c['pair_connect_ms'], 1, 'no pair')} |\n"
                      for c in capacity)
            + f"\nOn 2 cores the clients take CPU too; the most of the three ({DEFAULT}): "
            f"{summary['pushes_per_s_one_shard_lenet5']:.0f} pushes/s. A pair is the gloo "
            "group of one worker and the server: what a worker that joins or rejoins waits "
            "for before its first push (the others go on).\n\n"
            "## 11.2 M parameters by server shards\n\n"
            "The client copies each shard's part of a push and of a reply on a thread of its "
            f"own, while the shards update in parallel. Means of {len(rounds)} round(s), each "
            "measuring every line below one after the other; K = 2 / K = 1 by round: "
            + by_round("push_pull_gb_per_s_11m_k2", "push_pull_gb_per_s_11m_k1")
            + "; two copying processes / one by round: "
            + by_round("memcpy_sustained_gb_per_s_2_processes",
                       "memcpy_sustained_gb_per_s_1_process")
            + "; the passes of K = 2 / K = 1 by round: "
            + by_round("round_trip_passes_gb_per_s_11m_k2", "round_trip_passes_gb_per_s_11m_k1")
            + ".\n\n"
            f"- K = 1: {fmt(summary['push_pull_gb_per_s_11m_k1'])} GB/s push+pull\n"
            f"- K = 2: {fmt(summary['push_pull_gb_per_s_11m_k2'])}\n"
            f"- K = 4: {fmt(summary['push_pull_gb_per_s_11m_k4'])}\n"
            f"- memory copies of 11.2 M floats, back to back: one process {one:.2f} GB/s, two "
            f"at once {two:.2f} GB/s in all ({two / one:.2f}x): what a second process streaming "
            "memory adds on this node\n"
            f"- a round trip's memory passes alone (the client's two copies, the server's "
            "update and its copy into the reply; no transport, no wake-ups), back to back: on "
            f"all 11.2 M parameters in one process {passes[0]:.2f} GB/s push+pull (K = 1 "
            f"measured above: {k1 / passes[0]:.2f} of it); on half each in two processes at "
            f"once {passes[1]:.2f} in all ({passes[1] / passes[0]:.2f}x one): the most K = 2 "
            f"can reach here whatever the transport, {passes[1] / k1:.2f}x the K = 1 measured "
            f"(K = 2 measured: {summary['push_pull_gb_per_s_11m_k2'] / passes[1]:.2f} of it)\n"
            f"- the server's update: {summary['server_update_gb_per_s_11m']:.2f} GB/s, "
            f"{summary['server_update_gb_per_s_11m'] / summary['memcpy_gb_per_s']:.2f}x "
            "the memory copy rate\n\n## Ray's own processes while 4 workers train\n\n"
            "| process | cores |\n|---|---|\n"
            + "".join(f"| {k} | {v:.3f} |\n" for k, v in sorted(cores.items()))
            + f"\nIn all {sum(cores.values()):.3f} of a core (the workers, the server and the "
            "driver are not in this table).\n\n![](capacity.png)\n")

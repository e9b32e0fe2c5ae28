"""One worker against a plain PyTorch loop, and the push/pull round trip through the
server actor against model size (LeNet-5, ResNet-18, its batch-norm buffers included).
`--config` sets the one-worker comparison's runs (both sides); the round trips keep their
two models."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from hetsync.bench.harness import Bench, paced_steps, save, verdict, write
from hetsync.cluster.actors import server_client
from hetsync.cluster.handles import ServerHandle
from hetsync.cluster.runtime import ray_session
from hetsync.config import TrainConfig
from hetsync.core.devices import compute_process
from hetsync.core.server import ParameterServer
from hetsync.core.wire import Contribution, buffers_to_vector, params_to_vector
from hetsync.data import load_dataset
from hetsync.models import build_model, resolve_model
from hetsync.run.train import train

RUN_SETTINGS = ("model", "dataset", "data_dir", "synthetic_samples", "batch_size", "iterations",
                "lr", "momentum", "lr_schedule", "threads_per_worker", "timeout_s")


def base_config(b: Bench) -> TrainConfig:
    """The one-worker run that the plain loop is measured against (the loop reads the same
    model, data, batch, optimizer settings and iterations)."""
    iterations = b.settings.get("iterations", 1000 if b.quick else 3000)
    return TrainConfig.from_flat(**{**b.base(), "workers": 1, "sync": "ssp", "staleness": 3,
                                    "iterations": iterations, "eval_every": iterations,
                                    "defer_eval": False})


def plain_loop(cfg: TrainConfig) -> float:
    """samples/s of the loop a user would write without a framework."""
    tr = cfg.training
    compute_process(tr.threads_per_worker)
    data, _ = load_dataset(cfg)
    model = build_model(resolve_model(tr.model, data.sample_shape, data.classes), tr.seed)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.update.lr, momentum=cfg.update.momentum)
    start = time.perf_counter()
    samples = paced_steps(model, data, tr.batch_size, np.random.default_rng(tr.seed),
                          steps=tr.iterations, opt=opt)
    return samples / (time.perf_counter() - start)


def round_trip(model_name: str, calls: int) -> dict[str, float]:
    """Seconds per push/pull round trip to the server actor over the default transport (a
    gradient and the buffers up, the new weights and buffers down), split into the server's
    update (timed in-process) and the remainder, which is moving the bytes (not timed on its
    own); an empty Ray actor call beside it, for reference."""
    model = build_model(resolve_model(model_name, (1, 28, 28), 10), 0)  # as on MNIST
    weights, buffers = params_to_vector(model), buffers_to_vector(model)
    kw = dict(weights=weights, buffers=buffers, workers=1, bound=None, barrier=False, lr=0.01,
              momentum=0.5, batch_size=64, iterations=10**9, eval_every=10**9)
    grad = np.random.default_rng(0).normal(size=weights.size).astype(np.float32) * 1e-3
    push = [Contribution(0, 0, grad, 64, 1.0, 1, None, buffers)]
    ps = ParameterServer(**kw)
    ps.join(0)
    t0 = time.perf_counter()
    for i in range(calls):
        ps.submit(0, push[0]._replace(clock=i, base_version=i))
    update = (time.perf_counter() - t0) / calls
    server = ServerHandle(60.0, server=kw, allocation=dict(n_samples=64, workers=1,
                                                           batch_size=64, mode="uniform", seed=0))
    client = server_client(TrainConfig().cluster.transport, server.actors, 0, 60.0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a worker: idle OpenMP threads would spin on the cores
    try:
        client.join(0)
        for _ in range(3):
            server.status()
        t0 = time.perf_counter()
        for _ in range(calls):
            server.ping()
        fixed = (time.perf_counter() - t0) / calls
        t0 = time.perf_counter()
        for i in range(calls):
            client.get(client.push(0, [push[0]._replace(clock=i, base_version=i)]))
        total = (time.perf_counter() - t0) / calls
    finally:
        torch.set_num_threads(threads)
        client.close()
        server.kill()
    nbytes = 2 * 4 * (weights.size + (0 if buffers is None else buffers.size))
    return {"params": weights.size, "bytes": nbytes, "round_trip_s": total, "fixed_s": fixed,
            "update_s": update, "remainder_s": max(0.0, total - update),
            "effective_GB_per_s": nbytes / total / 1e9}


def run(b: Bench) -> list[Path]:
    """Measures the one-worker ratio (plain loop and hetsync interleaved, 2 repeats quick, 3
    full), then the round trips of LeNet-5 and ResNet-18. Returns the chart and report.md."""
    repeats, calls = (2, 100) if b.quick else (3, 300)
    cfg = base_config(b)
    iterations = cfg.training.iterations
    trips = {}
    with ray_session(None, cpus=cfg.training.threads_per_worker):
        for r in range(repeats):  # interleaved, so drifts in machine load hit both alike
            plain = plain_loop(cfg)
            s = train(cfg).summary
            b.record("one-worker", "plain loop", r, {"throughput_samples_per_s": plain})
            b.record("one-worker", "hetsync, 1 worker", r, s,
                     ratio_to_plain=s["throughput_samples_per_s"] / plain)
        for model in ("lenet5", "resnet18"):
            trips[model] = round_trip(model, calls if model == "lenet5" else max(10, calls // 10))
            b.rows.append({"suite": "overhead", "part": "round-trip", "case": model, **trips[model]})
            print(b.rows[-1], flush=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    names = list(trips)
    bottom = np.zeros(len(names))
    for part, color, label in (("update_s", "tab:green", "server update"),
                               ("remainder_s", "tab:blue", "remainder (moving the bytes)")):
        vals = np.array([1000 * trips[m][part] for m in names])
        ax.bar(names, vals, bottom=bottom, color=color, label=label)
        bottom += vals
    ax.set_yscale("log")
    ax.set_ylabel("ms per push/pull round trip (log)")
    ax.set_title("parameter-server round trip by model size")
    ax.legend()
    path = save(fig, b.out / "overhead-round-trip.png")
    pairs = [(p, h) for p, h in zip(b.rows[0:2 * repeats:2], b.rows[1:2 * repeats:2], strict=True)]
    mean = statistics.fmean(h["ratio_to_plain"] for _, h in pairs)
    report = b.header("hetsync bench overhead")
    report += (f"## One worker against a plain PyTorch loop ({iterations} iterations)\n\n"
               "| repeat | plain samples/s | hetsync samples/s | ratio |\n|---|---|---|---|\n"
               + "".join(f"| {r} | {p['throughput_samples_per_s']:.0f} | "
                         f"{h['throughput_samples_per_s']:.0f} | {h['ratio_to_plain']:.3f} |\n"
                         for r, (p, h) in enumerate(pairs))
               + f"\nMean ratio {mean:.3f} (target 0.95: {verdict(mean, 0.95)}).\n\n"
               "## Push/pull round trip\n\nOver the default transport (gloo pairs). The "
               "remainder is the round trip less the server's update (timed in-process): "
               "moving the bytes, not timed on its own. An empty Ray actor call, which a push "
               "no longer makes, is beside it for reference.\n\n| model | parameters | "
               "bytes moved | round trip (ms) | empty Ray call (ms) | server update (ms) | "
               "remainder (ms) | "
               "effective GB/s |\n|---|---|---|---|---|---|---|---|\n"
               + "".join(f"| {m} | {t['params']:,} | {t['bytes'] / 1e6:.1f} MB | "
                         f"{1000 * t['round_trip_s']:.2f} | {1000 * t['fixed_s']:.2f} | "
                         f"{1000 * t['update_s']:.2f} | {1000 * t['remainder_s']:.2f} | "
                         f"{t['effective_GB_per_s']:.2f} |\n" for m, t in trips.items())
               + "\n![](overhead-round-trip.png)\n")
    return [path, write(b.out / "report.md", report)]

"""`hetsync bench SUITE --out DIR`: measured comparisons, each run for real in this
invocation. Every suite writes `results.csv` (one row per run), PNG charts and `report.md`.

- paper: the delay-synchronous reference experiments on mnist-10k with LeNet-5, batch 64 and
  emulated heterogeneous workers (speeds 1,1,2,4 repeated): (a) time and accuracy against the
  number of workers for BSP and SSP s=3, (b) unrelated load on one worker, (c) the same run
  across several Ray nodes, (d) the staleness bound s. Means over 3 seeds, with the spread.
- peers: the same cluster trained by PyTorch DDP (gloo), a plain Ray parameter server (sync
  and async) and hetsync (BSP, SSP+IDPA, ASP, AGWU).
- overhead: one worker against a plain PyTorch loop, and the push/pull round trip against
  model size (LeNet-5, ResNet-18).
"""

from __future__ import annotations

import csv
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import ray  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from hetsync import actors  # noqa: E402
from hetsync.baselines import ddp_train, ray_ps_train  # noqa: E402
from hetsync.config import TrainConfig  # noqa: E402
from hetsync.data import load_dataset  # noqa: E402
from hetsync.engine import train  # noqa: E402
from hetsync.errors import ConfigError  # noqa: E402
from hetsync.models import build_model, resolve_model  # noqa: E402
from hetsync.runtime import _set_cluster_mode, ray_session  # noqa: E402
from hetsync.server import ParameterServer  # noqa: E402
from hetsync.wire import params_to_vector  # noqa: E402

SUITES = ("paper", "peers", "overhead")
METRICS = ("wall_time_s", "throughput_samples_per_s", "ideal_throughput_samples_per_s",
           "final_val_accuracy", "best_val_accuracy", "time_to_target_s")


@dataclass(frozen=True)
class Budget:
    iterations: int
    target: float
    seeds: int
    evaluations: int = 15  # snapshots validated per run


BUDGETS = {  # (quick, full) per suite; quick finishes within 10 minutes on 2 cores
    # quick paper, measured here: 400 iterations and four bounds took 11.3 minutes, 320 and
    # three bounds 10.1 minutes, 256 10.3 minutes on a slower day (most of a run is starting
    # its actors, which import PyTorch)
    "paper": (Budget(192, 0.75, 3, evaluations=8), Budget(3000, 0.97, 3)),
    "peers": (Budget(1500, 0.95, 1), Budget(3000, 0.97, 3)),
}


def speeds_for(n: int) -> tuple[float, ...]:
    return tuple(float((1, 1, 2, 4)[i % 4]) for i in range(n))


def middle_third_slowdown(workers: int, iterations: int, worker: int = 0) -> str:
    """Worker `worker` 4x slower for the middle third of its share of the iterations."""
    per = iterations // workers
    return f"{worker}@{per // 3}-{2 * per // 3}:4"


class Bench:
    """Runs and records; one row per run, printed as it finishes."""

    def __init__(self, suite: str, out: Path, data_dir: str | None, quick: bool):
        self.suite, self.out, self.quick = suite, out, quick
        self.budget = BUDGETS[suite][0 if quick else 1] if suite in BUDGETS else None
        self.data_dir = data_dir
        self.rows: list[dict[str, Any]] = []
        self.started = time.time()

    def config(self, **kw: Any) -> TrainConfig:
        b = self.budget
        # Snapshots are evaluated after each run, as the peers' are (baselines.py): on two
        # shared cores a live evaluator would take CPU from the workers being measured.
        base = dict(dataset="mnist-10k", data_dir=self.data_dir, batch_size=64,
                    iterations=b.iterations,
                    eval_every=max(1, b.iterations // b.evaluations),
                    target_accuracy=b.target, progress=False, defer_eval=True)
        return TrainConfig(**{**base, **kw})

    def record(self, part: str, case: str, seed: int, result: dict, **extra: Any) -> None:
        row = {"suite": self.suite, "part": part, "case": case, "seed": seed, **extra,
               **{k: result.get(k) for k in METRICS}}
        self.rows.append(row)
        shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
        print(f"[{time.time() - self.started:6.0f}s] {shown}", flush=True)

    def hetsync(self, part: str, case: str, seed: int, x: float | None = None,
                **kw: Any) -> dict:
        """One hetsync run; `x` is the case's value on a chart's x axis, if it has one."""
        s = train(self.config(seed=seed, **kw)).summary
        self.record(part, case, seed, s, **({} if x is None else {"x": x}))
        return s

    def write_csv(self) -> Path:
        path = self.out / "results.csv"
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(self.rows)
        return path

    def stats(self, part: str, metric: str) -> dict[str, tuple[float | None, float, int]]:
        """case -> (mean, spread as population std, runs that have the value)."""
        out: dict[str, tuple[float | None, float, int]] = {}
        for case in dict.fromkeys(r["case"] for r in self.rows if r["part"] == part):
            vals = [r[metric] for r in self.rows if r["part"] == part and r["case"] == case
                    and r[metric] is not None]
            out[case] = ((statistics.fmean(vals), statistics.pstdev(vals), len(vals)) if vals
                         else (None, 0.0, 0))
        return out

    def table(self, part: str, metrics: tuple[str, ...] = METRICS) -> str:
        head = "| case | " + " | ".join(metrics) + " |\n|---|" + "---|" * len(metrics) + "\n"
        cols = {m: self.stats(part, m) for m in metrics}
        lines = []
        for case in cols[metrics[0]]:
            cells = []
            for m in metrics:
                mean, sd, n = cols[m][case]
                runs = sum(r["part"] == part and r["case"] == case for r in self.rows)
                cells.append("not reached" if mean is None else
                             f"{mean:.4g} ± {sd:.2g}" + (f" ({n}/{runs} runs)" if n < runs else ""))
            lines.append(f"| {case} | " + " | ".join(cells) + " |")
        return head + "\n".join(lines) + "\n"

    def header(self, title: str, command: str) -> str:
        return (f"# {title}\n\nMeasured by `{command}` on {time.strftime('%Y-%m-%d')}: "
                f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                f"Python {platform.python_version()}, torch {torch.__version__}, "
                f"Ray {ray.__version__}. Mode: {'quick' if self.quick else 'full'}"
                + (f"; budget {self.budget.iterations} iterations, target accuracy "
                   f"{self.budget.target}, {self.budget.seeds} seed(s) per case"
                   if self.budget else "") + ". Values are mean ± spread (population "
                "standard deviation) over the seeds; every number here comes from this run "
                "(results.csv).\n\n")


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a (a run did not reach the target)"


def _verdict(value: float, target: float) -> str:
    return "met" if value >= target else "MISSED"


def _against(a: float | None, b: float | None, target: float) -> str:
    """The ratio a / b and whether it meets `target`, in words the report can be read by."""
    if not (a and b):
        return f"{_ratio(a, b)} (target >= {target:g}x: not measured)"
    return f"{a / b:.2f}x (target >= {target:g}x: {_verdict(a / b, target)})"


def _errorbars(ax, bench: Bench, part: str, metric: str, cases: list[str], xs, label: str):
    st = bench.stats(part, metric)
    pts = [(x, st[c][0], st[c][1]) for x, c in zip(xs, cases, strict=True) if st[c][0] is not None]
    if pts:
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts],
                    marker="o", capsize=3, label=label)


def _bars(ax, bench: Bench, part: str, metric: str) -> None:
    st = bench.stats(part, metric)
    cases = list(st)
    ax.bar(range(len(cases)), [st[c][0] or 0 for c in cases],
           yerr=[st[c][1] for c in cases], capsize=3, color="tab:blue")
    ax.set_xticks(range(len(cases)), cases, rotation=30, ha="right", fontsize=8)


# --------------------------------------------------------------------------- paper
@contextmanager
def multi_node_session(cpus: tuple[int, ...] = (1, 2, 2)) -> Iterator[int]:
    """Several Ray nodes on this machine (a head and workers, each a raylet with its own
    CPUs), joined by the driver as a cluster; yields the node count."""
    from ray.cluster_utils import Cluster

    _set_cluster_mode(False)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus[0]})
    try:
        for c in cpus[1:]:
            cluster.add_node(num_cpus=c)
        ray.init(address=cluster.address)
        try:
            yield len(cpus)
        finally:
            ray.shutdown()
    finally:
        cluster.shutdown()


def suite_paper(b: Bench) -> list[Path]:
    seeds = range(b.budget.seeds)
    counts = (1, 2, 4, 8)
    # Every run starts its actors afresh (each process imports PyTorch: about 6 s of the 2
    # cores per run), so the quick mode keeps three of the six bounds to stay within 10 minutes.
    svals = (0, 3, 12) if b.quick else (0, 1, 2, 3, 6, 12)
    with ray_session(None, cpus=max(counts)):
        for n in counts:  # (a)
            for sync in ("bsp", "ssp"):
                for seed in seeds:
                    b.hetsync("a", f"{sync} n={n}", seed, workers=n, speeds=speeds_for(n),
                              sync=sync, staleness=3, x=n)
        n = max(counts)  # (b)
        for sync in ("bsp", "ssp"):
            for seed in seeds:
                b.hetsync("b", f"{sync} + load on worker 0", seed, workers=n,
                          speeds=speeds_for(n), sync=sync, staleness=3,
                          interference=middle_third_slowdown(n, b.budget.iterations))
        for s in svals:  # (d); s=3 on 4 workers is (a)'s run, recorded again, not re-run
            for seed in seeds:
                if s == 3:
                    b.rows.append({**next(r for r in b.rows if r["case"] == "ssp n=4"
                                          and r["seed"] == seed), "part": "d", "case": "s=3",
                                   "x": 3})
                    continue
                b.hetsync("d", f"s={s}", seed, workers=4, speeds=speeds_for(4), sync="ssp",
                          staleness=s, x=s)
    with multi_node_session() as nodes:  # (c)
        for sync in ("bsp", "ssp"):
            for seed in seeds:
                s = b.hetsync("c", f"{sync}, 4 workers on {nodes} nodes", seed, workers=4,
                              speeds=speeds_for(4), sync=sync, staleness=3)
                b.rows[-1]["worker_nodes"] = s["worker_nodes"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for sync in ("bsp", "ssp"):
        cases = [f"{sync} n={n}" for n in counts]
        label = "BSP" if sync == "bsp" else "SSP s=3"
        _errorbars(axes[0], b, "a", "wall_time_s", cases, counts, label)
        _errorbars(axes[1], b, "a", "final_val_accuracy", cases, counts, label)
    for ax, what in zip(axes, ("training time (s)", "final validation accuracy"), strict=True):
        ax.set_xlabel("workers (speeds 1,1,2,4 repeated)")
        ax.set_ylabel(what)
        ax.set_xticks(counts)
        ax.legend()
    fig.suptitle(f"(a) {b.budget.iterations} iterations of LeNet-5 on mnist-10k")
    paths = [_save(fig, b.out / "paper-workers.png")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    _errorbars(axes[0], b, "d", "wall_time_s", [f"s={s}" for s in svals], svals, "SSP")
    _errorbars(axes[1], b, "d", "final_val_accuracy", [f"s={s}" for s in svals], svals, "SSP")
    for ax, what in zip(axes, ("training time (s)", "final validation accuracy"), strict=True):
        ax.set_xlabel("staleness bound s")
        ax.set_ylabel(what)
    fig.suptitle("(d) the maximum interval s, 4 workers (speeds 1,1,2,4)")
    paths.append(_save(fig, b.out / "paper-staleness.png"))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    _bars(axes[0], b, "b", "wall_time_s")
    axes[0].set_ylabel("training time (s)")
    axes[0].set_title("(b) interference, 8 workers")
    _bars(axes[1], b, "c", "wall_time_s")
    axes[1].set_ylabel("training time (s)")
    axes[1].set_title("(c) several Ray nodes")
    paths.append(_save(fig, b.out / "paper-interference-nodes.png"))

    st = {p: b.stats(p, "wall_time_s") for p in "abcd"}
    report = b.header("hetsync bench paper", f"hetsync bench paper{' --quick' if b.quick else ''}")
    report += ("## (a) Workers\n\n" + b.table("a") + "\n"
               + "".join(f"- {n} workers: BSP / SSP time ratio "
                         f"{_ratio(st['a'][f'bsp n={n}'][0], st['a'][f'ssp n={n}'][0])}\n"
                         for n in counts)
               + "\n![](paper-workers.png)\n\n## (b) Unrelated load on worker 0 "
               f"({middle_third_slowdown(8, b.budget.iterations)}: 4x slower for the middle "
               "third of its iterations)\n\n" + b.table("b") + "\n"
               f"BSP / SSP time ratio: {_ratio(*[v[0] for v in st['b'].values()])}\n\n"
               "## (c) Several Ray nodes on this machine\n\n" + b.table("c") + "\n"
               f"Worker nodes used per run: {sorted({r['worker_nodes'] for r in b.rows if r['part'] == 'c'})}. "
               f"BSP / SSP time ratio: {_ratio(*[v[0] for v in st['c'].values()])}\n\n"
               "![](paper-interference-nodes.png)\n\n## (d) The maximum interval s\n\n"
               "4 workers, speeds 1,1,2,4; the s=3 rows are (a)'s runs with 4 workers.\n\n"
               + b.table("d") + "\n![](paper-staleness.png)\n")
    return [*paths, _write(b.out / "report.md", report)]


# --------------------------------------------------------------------------- peers
PEER_RUNS = {
    "DDP (gloo)": ("ddp", {}),
    "plain Ray PS, sync": ("rayps-sync", {}),
    "plain Ray PS, async": ("rayps-async", {}),
    "hetsync BSP": ("hetsync", dict(sync="bsp")),
    "hetsync SSP+IDPA": ("hetsync", dict(sync="ssp", staleness=3, allocation="idpa")),
    "hetsync ASP": ("hetsync", dict(sync="asp")),
    "hetsync AGWU": ("hetsync", dict(sync="ssp", staleness=3, allocation="idpa", update="agwu",
                                     local_steps=8, lr=0.1)),
}


def suite_peers(b: Bench) -> list[Path]:
    n = 4
    scenarios = {
        "speeds 1,1,2,4": dict(speeds=speeds_for(n)),
        "speeds 1,1,2,4 + load": dict(speeds=speeds_for(n), interference=middle_third_slowdown(
            n, b.budget.iterations, worker=1)),
        "equal speeds": dict(speeds=(1.0,) * n),
    }
    with ray_session(None, cpus=n):
        for scenario, setting in scenarios.items():
            names = PEER_RUNS if scenario != "equal speeds" else [
                "DDP (gloo)", "plain Ray PS, sync", "hetsync BSP"]
            for seed in range(b.budget.seeds):
                for name in names:
                    kind, extra = PEER_RUNS[name]
                    cfg = b.config(workers=n, seed=seed, **setting, **extra)
                    if kind == "hetsync":
                        res = train(cfg).summary
                    elif kind == "ddp":
                        res = ddp_train(cfg)
                    else:
                        res = ray_ps_train(cfg, synchronous=kind == "rayps-sync")
                    b.record(scenario, name, seed, res)
    report = b.header("hetsync bench peers", f"hetsync bench peers{' --quick' if b.quick else ''}")
    paths = []
    for scenario in scenarios:
        fig, axes = plt.subplots(1, 3, figsize=(14, 4))
        for ax, metric, label in zip(axes, ("time_to_target_s", "throughput_samples_per_s",
                                            "final_val_accuracy"),
                                     (f"time to {b.budget.target} (s)", "samples/s",
                                      "final validation accuracy"), strict=True):
            _bars(ax, b, scenario, metric)
            ax.set_ylabel(label)
        fig.suptitle(f"peers, 4 workers, {scenario}")
        slug = scenario.replace(" ", "-").replace(",", "").replace("+", "plus")
        paths.append(_save(fig, b.out / f"peers-{slug}.png"))
        report += f"## {scenario}\n\n" + b.table(scenario) + f"\n![]({paths[-1].name})\n\n"
    ttt = b.stats("speeds 1,1,2,4", "time_to_target_s")
    thr = b.stats("equal speeds", "throughput_samples_per_s")
    ideal = b.stats("speeds 1,1,2,4", "ideal_throughput_samples_per_s")
    got = b.stats("speeds 1,1,2,4", "throughput_samples_per_s")
    report += ("## Ratios\n\n"
               f"- Speeds 1,1,2,4, time to {b.budget.target}: DDP / hetsync SSP+IDPA = "
               f"{_against(ttt['DDP (gloo)'][0], ttt['hetsync SSP+IDPA'][0], 2)}\n"
               f"- Equal speeds, throughput: hetsync BSP / DDP = "
               f"{_against(thr['hetsync BSP'][0], thr['DDP (gloo)'][0], 0.7)}\n"
               + "".join(f"- Speeds 1,1,2,4, {name} / DDP time to target: "
                         f"{_ratio(ttt[name][0], ttt['DDP (gloo)'][0])}; throughput / ideal: "
                         f"{_ratio(got[name][0], ideal[name][0])}\n" for name in PEER_RUNS))
    return [*paths, _write(b.out / "report.md", report)]


# --------------------------------------------------------------------------- overhead
def plain_loop(cfg: TrainConfig) -> float:
    """samples/s of the loop a user would write without a framework."""
    torch.set_num_threads(cfg.threads_per_worker)
    data, _ = load_dataset(cfg)
    model = build_model(resolve_model(cfg.model), cfg.seed)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    rng = np.random.default_rng(cfg.seed)
    start = time.perf_counter()
    for _ in range(cfg.iterations):
        idx = rng.integers(0, len(data), cfg.batch_size)
        opt.zero_grad(set_to_none=True)
        x, y = data.batch(idx)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return cfg.iterations * cfg.batch_size / (time.perf_counter() - start)


def round_trip(model: str, calls: int) -> dict[str, float]:
    """Seconds per push/pull round trip through the server actor (a gradient up, the new
    weights down), split into Ray's fixed per-call cost, the server's update, and the rest
    (serialising and moving the bytes)."""
    weights = params_to_vector(build_model(resolve_model(model), 0))
    kw = dict(weights=weights, workers=1, bound=None, barrier=False, lr=0.01, momentum=0.5,
              batch_size=64, iterations=10**9, eval_every=10**9)
    grad = np.random.default_rng(0).normal(size=weights.size).astype(np.float32) * 1e-3
    ps = ParameterServer(**kw)
    ps.join(0)
    t0 = time.perf_counter()
    for i in range(calls):
        ps.submit(0, i, i, grad, 64, 1.0)
    update = (time.perf_counter() - t0) / calls
    server = actors.remote_server(timeout_s=60, **kw)
    try:
        ray.get(server.join.remote(0))
        for _ in range(3):
            ray.get(server.status.remote())
        t0 = time.perf_counter()
        for _ in range(calls):
            ray.get(server.ready.remote())
        fixed = (time.perf_counter() - t0) / calls
        t0 = time.perf_counter()
        for i in range(calls):
            ray.get(server.push.remote(0, [(i, i, grad, 64, 1.0, 1, None)]))
        total = (time.perf_counter() - t0) / calls
    finally:
        ray.kill(server)
    nbytes = 2 * 4 * weights.size
    return {"params": weights.size, "bytes": nbytes, "round_trip_s": total, "fixed_s": fixed,
            "update_s": update, "transfer_s": max(0.0, total - fixed - update),
            "effective_GB_per_s": nbytes / total / 1e9}


def suite_overhead(b: Bench) -> list[Path]:
    iterations, repeats, calls = (1000, 2, 100) if b.quick else (3000, 3, 300)
    cfg = TrainConfig(dataset="mnist-10k", data_dir=b.data_dir, workers=1, sync="ssp",
                      staleness=3, iterations=iterations, eval_every=iterations, progress=False)
    trips = {}
    with ray_session(None, cpus=1):
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
    for part, color in (("fixed_s", "tab:gray"), ("update_s", "tab:green"),
                        ("transfer_s", "tab:blue")):
        vals = np.array([1000 * trips[m][part] for m in names])
        ax.bar(names, vals, bottom=bottom, color=color, label=part.replace("_s", ""))
        bottom += vals
    ax.set_yscale("log")
    ax.set_ylabel("ms per push/pull round trip (log)")
    ax.set_title("parameter-server round trip by model size")
    ax.legend()
    path = _save(fig, b.out / "overhead-round-trip.png")
    ratios = [r["ratio_to_plain"] for r in b.rows if "ratio_to_plain" in r]
    report = b.header("hetsync bench overhead",
                      f"hetsync bench overhead{' --quick' if b.quick else ''}")
    report += (f"## One worker against a plain PyTorch loop ({iterations} iterations)\n\n"
               "| repeat | plain samples/s | hetsync samples/s | ratio |\n|---|---|---|---|\n"
               + "".join(f"| {r} | {b.rows[2 * r]['throughput_samples_per_s']:.0f} | "
                         f"{b.rows[2 * r + 1]['throughput_samples_per_s']:.0f} | "
                         f"{b.rows[2 * r + 1]['ratio_to_plain']:.3f} |\n" for r in range(repeats))
               + f"\nMean ratio {statistics.fmean(ratios):.3f} (target 0.8: "
               f"{_verdict(statistics.fmean(ratios), 0.8)}).\n\n"
               "## Push/pull round trip\n\n| model | parameters | bytes moved | round trip "
               "(ms) | Ray call (ms) | server update (ms) | transfer (ms) | effective GB/s |\n"
               "|---|---|---|---|---|---|---|---|\n"
               + "".join(f"| {m} | {t['params']:,} | {t['bytes'] / 1e6:.1f} MB | "
                         f"{1000 * t['round_trip_s']:.2f} | {1000 * t['fixed_s']:.2f} | "
                         f"{1000 * t['update_s']:.2f} | {1000 * t['transfer_s']:.2f} | "
                         f"{t['effective_GB_per_s']:.2f} |\n" for m, t in trips.items())
               + "\n" + "".join(
                   f"- {m}: the largest cost is "
                   f"{max(('Ray call', t['fixed_s']), ('server update', t['update_s']), ('transfer', t['transfer_s']), key=lambda kv: kv[1])[0]}.\n"
                   for m, t in trips.items())
               + "\n![](overhead-round-trip.png)\n")
    return [path, _write(b.out / "report.md", report)]


# --------------------------------------------------------------------------- entry
def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def run_suite(suite: str, out: Path, data_dir: str | None, quick: bool) -> list[Path]:
    if (out / "report.md").exists() or (out / "results.csv").exists():
        raise ConfigError(f"--out {out} holds earlier benchmark results; choose another folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create --out {out}: {e.strerror or e}") from e
    bench = Bench(suite, out, data_dir, quick)
    print(f"hetsync bench {suite}: writing to {out}", file=sys.stderr, flush=True)
    made = {"paper": suite_paper, "peers": suite_peers, "overhead": suite_overhead}[suite](bench)
    return [bench.write_csv(), *made]

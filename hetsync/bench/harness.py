"""What every suite shares: runs recorded as rows (`results.csv`), statistics over seeds,
report text, charts, and the entry point `run_suite`. Every number a report prints comes
from the invocation that wrote it."""

from __future__ import annotations

import csv
import importlib
import os
import platform
import statistics
import sys
import time
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

from hetsync.config import TrainConfig  # noqa: E402
from hetsync.data import (
    ArrayData,  # noqa: E402
    load_dataset,  # noqa: E402
)
from hetsync.emulation import StepPacer, calibrate_s_per_sample, write_calibration  # noqa: E402
from hetsync.errors import ConfigError  # noqa: E402
from hetsync.models import build_model, resolve_model  # noqa: E402
from hetsync.run.train import train  # noqa: E402

METRICS = ("wall_time_s", "throughput_samples_per_s", "ideal_throughput_samples_per_s",
           "final_val_accuracy", "best_val_accuracy", "time_to_target_s")
DEFAULT_SPEEDS = (1.0, 1.0, 2.0, 4.0)


@dataclass(frozen=True)
class Budget:
    iterations: int
    target: float
    seeds: int
    evaluations: int = 15  # snapshots validated per run


def speeds_for(n: int) -> tuple[float, ...]:
    """The emulated cluster of every suite: speeds 1,1,2,4 repeated."""
    return tuple(DEFAULT_SPEEDS[i % len(DEFAULT_SPEEDS)] for i in range(n))


def middle_third_slowdown(workers: int, iterations: int, worker: int = 0) -> str:
    """Worker `worker` 4x slower for the middle third of its share of the iterations."""
    per = iterations // workers
    return f"{worker}@{per // 3}-{2 * per // 3}:4"


def paced_steps(model: torch.nn.Module, data: ArrayData, batch: int, rng: np.random.Generator,
                steps: int | None = None, until: float | None = None,
                pacer: StepPacer | None = None, opt: torch.optim.Optimizer | None = None) -> int:
    """The loop a user writes without a framework: random batches, forward, backward, and a
    step if `opt`; paced by `pacer` where it emulates a node. Runs `steps` times or until the
    time `until`; returns the samples it trained on."""
    samples = it = 0
    while (steps is None or it < steps) and (until is None or time.time() < until):
        began = time.time()
        idx = rng.integers(0, len(data), batch)
        model.zero_grad(set_to_none=True)
        x, y = data.batch(idx)
        F.cross_entropy(model(x), y).backward()
        if opt is not None:
            opt.step()
        if pacer is not None:
            pacer.pace(began, batch, it)
        samples, it = samples + batch, it + 1
    return samples


class Bench:
    """Runs and records; one row per run, printed as it finishes."""

    def __init__(self, suite: str, out: Path, data_dir: str | None, quick: bool,
                 budget: Budget | None = None):
        self.suite, self.out, self.quick, self.budget = suite, out, quick, budget
        self.data_dir = data_dir
        self.rows: list[dict[str, Any]] = []
        self.started = time.time()

    def calibration(self) -> str:
        """This machine measured once for every run of the invocation (calibration.json in
        the results), so that the runs it compares emulate the same cluster."""
        path = self.out / "calibration.json"
        if not path.exists():
            cfg = TrainConfig.from_flat(dataset="mnist-10k", data_dir=self.data_dir)
            data, _ = load_dataset(cfg)
            model = build_model(resolve_model(cfg.training.model, data.sample_shape, data.classes),
                                    0)
            write_calibration(path, calibrate_s_per_sample(model, data.x, 64), cfg)
        return str(path)

    def config(self, **settings: Any) -> TrainConfig:
        b = self.budget
        # Snapshots are evaluated after each run, as the peers' are (baselines.py): on two
        # shared cores a live evaluator would take CPU from the workers being measured.
        base = dict(dataset="mnist-10k", data_dir=self.data_dir, batch_size=64,
                    iterations=b.iterations, eval_every=max(1, b.iterations // b.evaluations),
                    target_accuracy=b.target, progress=False, defer_eval=True,
                    calibration=self.calibration())
        return TrainConfig.from_flat(**{**base, **settings})

    def record(self, part: str, case: str, seed: int, result: dict, **extra: Any) -> dict:
        row = {"suite": self.suite, "part": part, "case": case, "seed": seed, **extra,
               **{k: result.get(k) for k in METRICS}}
        self.rows.append(row)
        shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
        print(f"[{time.time() - self.started:6.0f}s] {shown}", flush=True)
        return row

    def hetsync(self, part: str, case: str, seed: int, x: float | None = None,
                **settings: Any) -> dict:
        """One hetsync run; `x` is the case's value on a chart's x axis, if it has one."""
        s = train(self.config(seed=seed, **settings)).summary
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
                    and r.get(metric) is not None]
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

    def header(self, title: str) -> str:
        command = f"hetsync bench {self.suite}{' --quick' if self.quick else ''}"
        return (f"# {title}\n\nMeasured by `{command}` on {time.strftime('%Y-%m-%d')}: "
                f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                f"Python {platform.python_version()}, torch {torch.__version__}, "
                f"Ray {ray.__version__}. Mode: {'quick' if self.quick else 'full'}"
                + (f"; budget {self.budget.iterations} iterations, target accuracy "
                   f"{self.budget.target}, {self.budget.seeds} seed(s) per case"
                   if self.budget else "") + ". Every emulated run reads one calibration of "
                "this machine, measured once for the invocation (calibration.json). Values are "
                "mean ± spread (population "
                "standard deviation) over the seeds; every number here comes from this run "
                "(results.csv).\n\n")


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a (a run did not reach the target)"


def verdict(value: float, target: float) -> str:
    return "met" if value >= target else "MISSED"


def against(a: float | None, b: float | None, target: float) -> str:
    """The ratio a / b and whether it meets `target`, in words the report can be read by."""
    if not (a and b):
        return f"{ratio(a, b)} (target >= {target:g}x: not measured)"
    return f"{a / b:.2f}x (target >= {target:g}x: {verdict(a / b, target)})"


def errorbars(ax, bench: Bench, part: str, metric: str, cases: list[str], xs, label: str):
    st = bench.stats(part, metric)
    pts = [(x, st[c][0], st[c][1]) for x, c in zip(xs, cases, strict=True) if st[c][0] is not None]
    if pts:
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts],
                    marker="o", capsize=3, label=label)


def bars(ax, bench: Bench, part: str, metric: str) -> None:
    st = bench.stats(part, metric)
    cases = list(st)
    ax.bar(range(len(cases)), [st[c][0] or 0 for c in cases],
           yerr=[st[c][1] for c in cases], capsize=3, color="tab:blue")
    ax.set_xticks(range(len(cases)), cases, rotation=30, ha="right", fontsize=8)


def save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def run_suite(suite: str, out: Path, data_dir: str | None, quick: bool) -> list[Path]:
    """Run `hetsync.bench.<suite>` into `out`; return the files written."""
    if (out / "report.md").exists() or (out / "results.csv").exists():
        raise ConfigError(f"--out {out} holds earlier benchmark results; choose another folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create --out {out}: {e.strerror or e}") from e
    module = importlib.import_module(f"hetsync.bench.{suite}")
    budgets = getattr(module, "BUDGETS", None)
    bench = Bench(suite, out, data_dir, quick, budgets[0 if quick else 1] if budgets else None)
    print(f"hetsync bench {suite}: writing to {out}", file=sys.stderr, flush=True)
    if budgets:  # measured now, on a quiet machine, before Ray starts; never one left behind
        (out / "calibration.json").unlink(missing_ok=True)
        bench.calibration()
    made = module.run(bench)
    return [bench.write_csv(), *made]

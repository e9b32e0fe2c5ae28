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
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import ray  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from hetsync.config import TrainConfig, flatten  # noqa: E402
from hetsync.data import (
    ArrayData,  # noqa: E402
    load_dataset,  # noqa: E402
)
from hetsync.emulation import StepPacer, calibrate_s_per_sample, write_calibration  # noqa: E402
from hetsync.errors import ConfigError, DivergedError  # noqa: E402
from hetsync.models import build_model, resolve_model  # noqa: E402
from hetsync.run.train import train  # noqa: E402

METRICS = ("wall_time_s", "throughput_samples_per_s", "ideal_throughput_samples_per_s",
           "final_val_accuracy", "best_val_accuracy", "time_to_target_s", "samples_to_target")
DEFAULT_SPEEDS = (1.0, 1.0, 2.0, 4.0)
# Every system's learning rate and momentum come from the same sweep (Bench.tune): (steps,
# momenta), each step lr / (1 - momentum) at each momentum. hetsync's lr is per mini-batch of
# --batch-size, a gradient weighted by its samples as each peer weighs its global batch.
# Momentum 0 is in the grid because asynchrony acts as momentum of its own (Mitliagkas et
# al., "Asynchrony begets momentum", arXiv:1605.09774): hetsync SSP + IDPA on speeds 1,1,2,4
# needed 60,645 samples to 0.97 at lr 0.06, momentum 0 against 75,497 at the same step with
# momentum 0.5 (5 and 6 seeds), where BSP + uniform needed about as many either way.
# The steps go up to 0.6 for AGWU, whose workers take 8 local steps that its merge attenuates:
# its point in the seventh heterogeneous report was lr 0.1, momentum 0.9 (a step of 1.0), and
# with steps up to 0.2 the ninth's sweep chose 0.2, which reached 0.97 on 1 of 3 seeds.
SWEEP = ((0.02, 0.06, 0.2, 0.6), (0.0, 0.5, 0.9))
SWEEP_QUICK = ((0.02, 0.06, 0.2), (0.5,))
# The sweep's runs take this seed, apart from the measured runs' 0, 1, ...: a setting is not
# chosen on the initial weights and data order it is then measured on.
SWEEP_SEED = 1000
SWEPT_SUITES = ("peers", "heterogeneous")  # the suites that call Bench.tune
# Runs per sweep point when --sweep-seeds is not given: (quick, full). With one run a point,
# the full peers suite chose lr 0.03, momentum 0.9 for hetsync BSP on seed 1000's 51,200
# samples, and then 1 of its 9 measured runs reached 0.97 (docs/benchmarks-peers-one-sweep-seed/).
SWEEP_SEEDS = (1, 2)
# The run settings a suite takes from `hetsync bench SUITE --config FILE` (each suite module
# names its own as RUN_SETTINGS): what every one of its runs shares. What tells its runs
# apart (sync, staleness, workers, speeds, allocation, update, seeds) the suite sets itself.
TRAINING_SETTINGS = ("model", "dataset", "data_dir", "synthetic_samples", "batch_size",
                     "iterations", "lr", "momentum", "lr_schedule", "target_accuracy",
                     "reference_slowdown", "timeout_s")


@dataclass(frozen=True)
class Budget:
    """One mode's budget of a suite (its BUDGETS hold (quick, full)): iterations per run, the
    target accuracy that time to target refers to, and seeds per case."""

    iterations: int
    target: float
    seeds: int
    # Snapshots validated per run: a time to target is read at the first one that reaches the
    # target. At 15 a run (200 iterations apart at 3000) one step of that grid was 12,800
    # samples, about a fifth of what SSP+IDPA takes to 0.97 on speeds 1,1,2,4, and where the
    # readings fell moved BSP+uniform / SSP+IDPA by more than the systems differ: 2.30x at 200
    # against 2.07x at 50 on one set of runs, 2.34x against 2.81x on another
    # (docs/allocation.md, "How much of the gap to 2.3x is in the reading"). Snapshots are taken
    # during the run and validated after it, so more of them cost the runs little.
    evaluations: int = 60


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
                 budget: Budget | None = None, settings: dict[str, Any] | None = None,
                 sweep_seeds: int = 1):
        """`settings`: run settings from --config (flat names), under every run's own;
        `sweep_seeds`: runs per sweep point (`tune`)."""
        self.suite, self.out, self.quick, self.budget = suite, out, quick, budget
        self.sweep_seeds = sweep_seeds
        self.data_dir = data_dir
        self.settings = dict(settings or {})
        self.rows: list[dict[str, Any]] = []
        self.tuned: dict[str, dict] = {}  # case -> the lr and momentum `tune` chose
        self.untried: dict[str, list[float]] = {}  # case -> the bolder steps `tune` skipped
        self.started = time.time()

    def base(self) -> dict[str, Any]:
        """What every run of the suite starts from: the suite's defaults, the budget, and
        the --config file's settings on top."""
        # Snapshots are evaluated after each run, as the peers' are (baselines.py): on two
        # shared cores a live evaluator would take CPU from the workers being measured.
        base = dict(dataset="mnist-10k", data_dir=self.data_dir, batch_size=64, progress=False,
                    defer_eval=True)
        if (b := self.budget) is not None:
            base.update(iterations=b.iterations, target_accuracy=b.target,
                        eval_every=max(1, b.iterations // b.evaluations))
        return {**base, **self.settings}

    def calibration(self) -> str:
        """This machine measured once for every run of the invocation (calibration.json in
        the results), so that the runs it compares emulate the same cluster."""
        path = self.out / "calibration.json"
        if not path.exists():
            cfg = TrainConfig.from_flat(**self.base())
            data, _ = load_dataset(cfg)
            model = build_model(resolve_model(cfg.training.model, data.sample_shape, data.classes),
                                0)
            write_calibration(path, calibrate_s_per_sample(model, data.x,
                                                           cfg.training.batch_size), cfg)
        return str(path)

    def config(self, **settings: Any) -> TrainConfig:
        """One run's config: the base, then the run's own settings (which win over the
        file's, with a warning where they differ: e.g. AGWU's own learning rate)."""
        for name, value in settings.items():
            if name in self.settings and self.settings[name] != value:
                warnings.warn(f"bench {self.suite}: some runs set {name} = {value!r} "
                              f"themselves, over --config's {self.settings[name]!r}",
                              stacklevel=2)
        return TrainConfig.from_flat(**{**self.base(), "calibration": self.calibration(),
                                        **settings})

    def record(self, part: str, case: str, seed: int, result: dict, **extra: Any) -> dict:
        """Append one run's row (`extra`, then `result`'s METRICS, None where it lacks one) and
        print it at once, so a long suite shows progress; returns the row."""
        row = {"suite": self.suite, "part": part, "case": case, "seed": seed, **extra,
               **{k: result.get(k) for k in METRICS}}
        self.rows.append(row)
        shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
        print(f"[{time.time() - self.started:6.0f}s] {shown}", flush=True)
        return row

    def tune(self, case: str, run: Callable[[TrainConfig], dict], **settings: Any) -> dict:
        """A system's own learning rate and momentum, from the sweep every system of the
        suite gets (`SWEEP`, a run of the suite's budget per point on each of `sweep_seeds`
        seeds from `SWEEP_SEED`, every run recorded under part "sweep"): of the points tried,
        the one whose worst run `sweep_key` ranks highest, so that a setting that reaches the
        target on one seed and not on another loses to one that reaches it on both. Settings the --config file
        fixes are kept, not swept (with both fixed there is no sweep). `run` trains one config
        and returns its summary.

        Steps go from the gentlest up, every momentum at one step before the next; once no
        point of a step ranks above the gentler steps' best, the bolder steps are not tried
        (`untried`; where --config fixes the lr, each momentum is a step of its own): in the
        eleventh heterogeneous invocation every system but AGWU ranked lower at 0.2 than at
        0.06, and then 25 of the 36 runs at 0.6 ended at chance or diverged, 13 of the 54
        minutes the sweep's runs trained (78 minutes in all, with each run's start-up).

        At the full budget, not a short one: at a fifth of it, lr 0.01 and momentum 0.9 won
        SSP+IDPA's sweep twice (by its final accuracy at 600 iterations), and then none of its
        six runs of 3000 iterations reached 0.97 (docs/benchmarks.md)."""
        points = sweep_points(*(SWEEP_QUICK if self.quick else SWEEP), self.settings.get("lr"),
                              self.settings.get("momentum"))
        if len(points) == 1:  # one point (fixed by --config, or quick with lr fixed): no choice
            self.tuned[case] = {"lr": points[0][0], "momentum": points[0][1]}
            return self.tuned[case]
        best: tuple[tuple, dict] | None = None
        by_step: dict[float, list[tuple[float, float]]] = {}
        for lr, momentum in points:
            by_step.setdefault(step_of(lr, momentum), []).append((lr, momentum))
        steps = sorted(by_step)
        for i, step in enumerate(steps):
            improved = False  # did a point of this step rank above the gentler steps' best
            for lr, momentum in by_step[step]:
                keys = []
                for seed in range(SWEEP_SEED, SWEEP_SEED + self.sweep_seeds):
                    cfg = self.config(**{**settings, "lr": lr, "momentum": momentum,
                                         "seed": seed})
                    row = self.record("sweep", case, seed, attempt(run, cfg), lr=lr,
                                      momentum=momentum)
                    keys.append(sweep_key(row, lr, momentum,
                                          cfg.output.eval_every * cfg.training.batch_size))
                key = min(keys)
                if best is None or key > best[0]:
                    best, improved = (key, {"lr": lr, "momentum": momentum}), True
            if not improved and i + 1 < len(steps):
                self.untried[case] = steps[i + 1:]
                break
        self.tuned[case] = best[1]
        return best[1]

    def sweep_table(self) -> str:
        """Every sweep point of `tune`, the chosen one of each system in bold."""
        rows = [r for r in self.rows if r["part"] == "sweep"]
        if not rows:
            return ""
        out = (f"## Learning rate and momentum: the same sweep for every system\n\n"
               f"{self.sweep_seeds} run(s) of the budget per point (seeds from {SWEEP_SEED}), a "
               "point ranked by its worst run; chosen: the fewest samples "
               f"to {self.budget.target} (by snapshot), then the gentler step lr / (1 - momentum), then the "
               "lower momentum; where no "
               "point reached it, the best final accuracy (`sweep_key`).\n\n| system | lr | "
               "momentum | samples to target | time to target (s) | final accuracy | wall time "
               "(s) |\n|---|---|---|---|---|---|---|\n")
        for r in rows:
            chosen = self.tuned.get(r["case"]) == {"lr": r["lr"], "momentum": r["momentum"]}
            reached = r["samples_to_target"] is not None
            cells = [r["case"], r["lr"], r["momentum"],
                     r["samples_to_target"] if reached else "not reached",
                     r["time_to_target_s"] if reached else "not reached",
                     r["final_val_accuracy"], r["wall_time_s"]]
            text = [f"{c:.4g}" if isinstance(c, float) else str(c) for c in cells]
            out += "| " + " | ".join(f"**{t}**" if chosen else t for t in text) + " |\n"
        if self.untried:
            skipped = [f"{case} steps {', '.join(f'{step:g}' for step in steps)}"
                       for case, steps in self.untried.items()]
            out += ("\nNot tried, since no point of the step before them ranked above the "
                    f"gentler steps' best: {'; '.join(skipped)}.\n")
        return out + "\n"

    def hetsync(self, part: str, case: str, seed: int, x: float | None = None,
                **settings: Any) -> dict:
        """One hetsync run; `x` is the case's value on a chart's x axis, if it has one."""
        s = train(self.config(seed=seed, **settings)).summary
        self.record(part, case, seed, s, **({} if x is None else {"x": x}))
        return s

    def write_csv(self) -> Path:
        """results.csv of every row so far: the columns are every key in the order first seen,
        empty where a row lacks one."""
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
        """A Markdown table of `part`, one line per case: each metric's mean ± spread over its
        runs, `(n/m runs)` where only some runs have it, `not reached` where none has."""
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
        """The report's title and its provenance: command, date, machine, versions, budget and
        --config settings (test_docs checks that every committed report names its command)."""
        command = (f"hetsync bench {self.suite}{' --quick' if self.quick else ''}"
                   + (f" --sweep-seeds {self.sweep_seeds}" if self.sweep_seeds > 1 else ""))
        return (f"# {title}\n\nMeasured by `{command}` on {time.strftime('%Y-%m-%d')}: "
                f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                f"Python {platform.python_version()}, torch {torch.__version__}, "
                f"Ray {ray.__version__}. Mode: {'quick' if self.quick else 'full'}"
                + (f"; budget {self.budget.iterations} iterations, target accuracy "
                   f"{self.budget.target}, {self.budget.seeds} seed(s) per case"
                   if self.budget else "")
                + ("; run settings from --config: "
                   + ", ".join(f"{k} = {v!r}" for k, v in self.settings.items())
                   if self.settings else "") + ". Every emulated run reads one calibration of "
                "this machine, measured once for the invocation (calibration.json). Values are "
                "mean ± spread (population "
                "standard deviation) over the seeds; every number here comes from this run "
                "(results.csv).\n\n")


def sweep_points(steps: tuple[float, ...], momenta: tuple[float, ...], lr: float | None = None,
                 momentum: float | None = None) -> list[tuple[float, float]]:
    """The sweep's (lr, momentum) points: each step lr / (1 - momentum) at each momentum, so
    that every momentum is tried at the same steps; an lr or a momentum the --config file
    fixes is kept."""
    momenta = momenta if momentum is None else (momentum,)
    if lr is not None:
        return [(lr, m) for m in momenta]
    return [(round(step * (1 - m), 10), m) for step in steps for m in momenta]


def step_of(lr: float, momentum: float) -> float:
    """The step lr / (1 - momentum) a sweep point takes, rounded so that one step is one
    whatever the float error (0.006 / (1 - 0.9) is 0.06000000000000001)."""
    return round(lr / (1 - momentum), 9)


def sweep_key(row: dict, lr: float, momentum: float, snapshot_samples: float) -> tuple:
    """How `Bench.tune` ranks its points (the greatest wins): those that reached the target
    first, by the snapshot that reached it (the samples it took, in snapshots of
    `snapshot_samples`: the statistical efficiency a setting decides; the rate of samples is
    the system's, time would rank equal samples by the machine's noise, and under IDPA the
    samples at one snapshot differ by a few dozen from run to run), then the gentler step
    lr / (1 - momentum) where the snapshot is the same: a point one seed cannot tell apart from
    a bolder one is the safer choice on the other seeds (at the same step too, `tune` keeps the
    lower momentum, which it tries first). Then, below them, those that did not reach it, by
    final accuracy. Snapshots come at `Budget.evaluations` a run: 60 since the eleventh
    heterogeneous invocation (3,200 samples apart at 3000 iterations of 64), 15 before, when
    more points tied and the gentler step decided more often.

    Measured: ranked by time, DDP's sweep chose lr 0.03, momentum 0.9 over 0.03, 0.5 and 0.01,
    0.9, all three at the same snapshot (76800 samples) and 0.2 s apart; its runs on the
    measured seeds then ended at 0.8905 and 0.964."""
    gentle = -step_of(lr, momentum)
    if row["samples_to_target"] is not None:
        return (1, -round(row["samples_to_target"] / snapshot_samples), gentle)
    return (0, row["final_val_accuracy"] or 0.0, gentle)


def attempt(run: Callable[[TrainConfig], dict], cfg: TrainConfig) -> dict:
    """`run(cfg)`'s summary or, where the training loss stopped being finite, a result that
    says so (accuracy 0, no throughput): one diverging run is a row of the report, not the end
    of a suite whose rows are written only when it ends."""
    try:
        return run(cfg)
    except DivergedError:
        return {"final_val_accuracy": 0.0}


def ratio(a: float | None, b: float | None) -> str:
    """`a / b` as `1.23x`, or `n/a` when either is None or 0: in the reports, a time to target
    that a run did not reach."""
    return f"{a / b:.2f}x" if a and b else "n/a (a run did not reach the target)"


def verdict(value: float, target: float) -> str:
    """`met` if `value` reaches `target` (>=), else `MISSED`, in capitals to stand out in a
    report."""
    return "met" if value >= target else "MISSED"


def against(a: float | None, b: float | None, target: float) -> str:
    """The ratio a / b and whether it meets `target`, in words the report can be read by."""
    if not (a and b):
        return f"{ratio(a, b)} (target >= {target:g}x: not measured)"
    return f"{a / b:.2f}x (target >= {target:g}x: {verdict(a / b, target)})"


def errorbars(ax, bench: Bench, part: str, metric: str, cases: list[str], xs, label: str):
    """Plot `metric`'s mean ± spread of each case of `part` at its x in `xs`, as one series named
    `label`; cases that no run has a value for are left out."""
    st = bench.stats(part, metric)
    pts = [(x, st[c][0], st[c][1]) for x, c in zip(xs, cases, strict=True) if st[c][0] is not None]
    if pts:
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts],
                    marker="o", capsize=3, label=label)


def bars(ax, bench: Bench, part: str, metric: str) -> None:
    """One bar per case of `part`: `metric`'s mean (0 where no run has it), its spread as the
    error bar."""
    st = bench.stats(part, metric)
    cases = list(st)
    ax.bar(range(len(cases)), [st[c][0] or 0 for c in cases],
           yerr=[st[c][1] for c in cases], capsize=3, color="tab:blue")
    ax.set_xticks(range(len(cases)), cases, rotation=30, ha="right", fontsize=8)


def save(fig, path: Path) -> Path:
    """Lay out `fig`, write it as a PNG (110 dpi) and close it, since pyplot keeps every open
    figure; returns `path`."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(path: Path, text: str) -> Path:
    """Write `text` to `path`; returns `path`, for a suite's list of the files it wrote."""
    path.write_text(text)
    return path


def suite_settings(suite: str, stored: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The run settings a --config file (sections as in `hetsync train --print-config`) gives
    `suite`, by flat name, checked as `hetsync train` checks them. A setting the suite does not
    take is refused, not ignored: its runs set it themselves, or it does not apply."""
    given = flatten(stored)
    TrainConfig.from_flat(**given)  # the values, with train's messages
    takes = importlib.import_module(f"hetsync.bench.{suite}").RUN_SETTINGS
    for name in given:
        if name not in takes:
            raise ConfigError(f"bench {suite} takes no run settings (got {name!r})" if not takes
                              else f"bench {suite} does not take {name!r} from --config (its "
                              f"runs set it themselves, or it does not apply); it takes "
                              f"{', '.join(takes)}")
    return given


def _bench(suite: str, out: Path, data_dir: str | None, quick: bool,
           settings: dict[str, Any], sweep_seeds: int | None = None) -> Bench:
    """The suite's Bench: its budget for the mode, with --config's iterations and target, and
    `sweep_seeds` runs per sweep point (None: the mode's `SWEEP_SEEDS` for a swept suite)."""
    if sweep_seeds is None:
        sweep_seeds = SWEEP_SEEDS[0 if quick else 1] if suite in SWEPT_SUITES else 1
    budgets = getattr(importlib.import_module(f"hetsync.bench.{suite}"), "BUDGETS", None)
    budget = budgets[0 if quick else 1] if budgets else None
    if budget is not None:
        budget = replace(budget, iterations=settings.get("iterations", budget.iterations),
                         target=settings.get("target_accuracy", budget.target))
    return Bench(suite, out, data_dir, quick, budget, settings, sweep_seeds)


def suite_toml(suite: str, data_dir: str | None, quick: bool,
               settings: dict[str, Any]) -> str:
    """`hetsync bench SUITE --print-config`: the run settings the suite takes, as its runs
    would start from them, in the TOML that --config reads back."""
    module = importlib.import_module(f"hetsync.bench.{suite}")
    if not module.RUN_SETTINGS:
        return f"# hetsync bench {suite} takes no run settings\n"
    bench = _bench(suite, Path("."), data_dir, quick, settings)
    # a suite whose runs do not start from Bench.base() says what they start from
    cfg = (module.base_config(bench) if hasattr(module, "base_config")
           else TrainConfig.from_flat(**bench.base()))
    return (f"# hetsync bench {suite}{' --quick' if quick else ''}: what every run starts "
            "from (--config reads it back);\n# each run sets what tells it apart on top (sync, "
            "workers, speeds, seeds, ...)\n" + cfg.to_toml(only=set(module.RUN_SETTINGS)))


def run_suite(suite: str, out: Path, data_dir: str | None, quick: bool,
              settings: dict[str, Any] | None = None,
              sweep_seeds: int | None = None) -> list[Path]:
    """Run `hetsync.bench.<suite>` into `out`, its runs starting from `settings` (from
    `suite_settings`), `sweep_seeds` runs per sweep point (None: the mode's default);
    return the files written."""
    if sweep_seeds is not None:  # given: checked here; not given, `_bench` takes the default
        if sweep_seeds < 1:
            raise ConfigError(f"--sweep-seeds must be at least 1 (got {sweep_seeds})")
        if sweep_seeds > 1 and suite not in SWEPT_SUITES:
            raise ConfigError(f"bench {suite} has no sweep; --sweep-seeds is for "
                              f"{' and '.join(SWEPT_SUITES)}")
    if (out / "report.md").exists() or (out / "results.csv").exists():
        raise ConfigError(f"--out {out} holds earlier benchmark results; choose another folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create --out {out}: {e.strerror or e}") from e
    module = importlib.import_module(f"hetsync.bench.{suite}")
    budgets = getattr(module, "BUDGETS", None)
    bench = _bench(suite, out, data_dir, quick, settings or {}, sweep_seeds)
    print(f"hetsync bench {suite}: writing to {out}", file=sys.stderr, flush=True)
    if budgets:  # measured now, on a quiet machine, before Ray starts; never one left behind
        (out / "calibration.json").unlink(missing_ok=True)
        bench.calibration()
    made = module.run(bench)
    return [bench.write_csv(), *made]

"""The delay-synchronous reference experiments on mnist-10k with LeNet-5, batch 64 and
emulated heterogeneous workers (speeds 1,1,2,4 repeated): (a) time and accuracy against the
number of workers for BSP and SSP s=3, (b) unrelated load on one worker, (c) the same run
across several Ray nodes, (d) the staleness bound s. Means over 3 seeds, with the spread."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from hetsync.bench.harness import (
    TRAINING_SETTINGS,
    Bench,
    Budget,
    bars,
    errorbars,
    middle_third_slowdown,
    ratio,
    save,
    speeds_for,
    write,
)
from hetsync.cluster.runtime import multi_node_session, ray_session

# (quick, full); quick finishes within 10 minutes on 2 cores. Measured here: 400 iterations
# and four bounds took 11.3 minutes, 320 and three bounds 10.1 minutes, 256 10.3 minutes on a
# slower day (most of a run is starting its actors, which import PyTorch).
BUDGETS = (Budget(192, 0.75, 3, evaluations=8), Budget(3000, 0.97, 3))
COUNTS = (1, 2, 4, 8)
RUN_SETTINGS = TRAINING_SETTINGS  # what `--config` may set for every run


def run(b: Bench) -> list[Path]:
    """Measures (a), (b) and (d) on one local Ray instance, then (c) on a local cluster of
    several Ray nodes, each case over the budget's seeds. Returns the charts and report.md."""
    seeds = range(b.budget.seeds)
    # Every run starts its actors afresh (each process imports PyTorch: about 6 s of the 2
    # cores per run), so the quick mode keeps three of the six bounds to stay within 10 minutes.
    svals = (0, 3, 12) if b.quick else (0, 1, 2, 3, 6, 12)
    with ray_session(None, cpus=max(COUNTS)):
        for n in COUNTS:  # (a)
            for sync in ("bsp", "ssp"):
                for seed in seeds:
                    b.hetsync("a", f"{sync} n={n}", seed, workers=n, speeds=speeds_for(n),
                              sync=sync, staleness=3, x=n)
        n = max(COUNTS)  # (b)
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
    return [*_charts(b, svals), write(b.out / "report.md", _report(b))]


def _charts(b: Bench, svals: tuple[int, ...]) -> list[Path]:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for sync in ("bsp", "ssp"):
        cases = [f"{sync} n={n}" for n in COUNTS]
        label = "BSP" if sync == "bsp" else "SSP s=3"
        errorbars(axes[0], b, "a", "wall_time_s", cases, COUNTS, label)
        errorbars(axes[1], b, "a", "final_val_accuracy", cases, COUNTS, label)
    for ax, what in zip(axes, ("training time (s)", "final validation accuracy"), strict=True):
        ax.set_xlabel("workers (speeds 1,1,2,4 repeated)")
        ax.set_ylabel(what)
        ax.set_xticks(COUNTS)
        ax.legend()
    fig.suptitle(f"(a) {b.budget.iterations} iterations of LeNet-5 on mnist-10k")
    paths = [save(fig, b.out / "paper-workers.png")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    errorbars(axes[0], b, "d", "wall_time_s", [f"s={s}" for s in svals], svals, "SSP")
    errorbars(axes[1], b, "d", "final_val_accuracy", [f"s={s}" for s in svals], svals, "SSP")
    for ax, what in zip(axes, ("training time (s)", "final validation accuracy"), strict=True):
        ax.set_xlabel("staleness bound s")
        ax.set_ylabel(what)
    fig.suptitle("(d) the maximum interval s, 4 workers (speeds 1,1,2,4)")
    paths.append(save(fig, b.out / "paper-staleness.png"))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    bars(axes[0], b, "b", "wall_time_s")
    axes[0].set_ylabel("training time (s)")
    axes[0].set_title("(b) interference, 8 workers")
    bars(axes[1], b, "c", "wall_time_s")
    axes[1].set_ylabel("training time (s)")
    axes[1].set_title("(c) several Ray nodes")
    paths.append(save(fig, b.out / "paper-interference-nodes.png"))
    return paths


def _report(b: Bench) -> str:
    st = {p: b.stats(p, "wall_time_s") for p in "abcd"}
    nodes = sorted({r["worker_nodes"] for r in b.rows if r["part"] == "c"})
    return (b.header("hetsync bench paper")
            + "## (a) Workers\n\n" + b.table("a") + "\n"
            + "".join(f"- {n} workers: BSP / SSP time ratio "
                      f"{ratio(st['a'][f'bsp n={n}'][0], st['a'][f'ssp n={n}'][0])}\n"
                      for n in COUNTS)
            + "\n![](paper-workers.png)\n\n## (b) Unrelated load on worker 0 "
            f"({middle_third_slowdown(8, b.budget.iterations)}: 4x slower for the middle "
            "third of its iterations)\n\n" + b.table("b") + "\n"
            f"BSP / SSP time ratio: {ratio(*[v[0] for v in st['b'].values()])}\n\n"
            "## (c) Several Ray nodes on this machine\n\n" + b.table("c") + "\n"
            f"Worker nodes used per run: {nodes}. "
            f"BSP / SSP time ratio: {ratio(*[v[0] for v in st['c'].values()])}\n\n"
            "![](paper-interference-nodes.png)\n\n## (d) The maximum interval s\n\n"
            "4 workers, speeds 1,1,2,4; the s=3 rows are (a)'s runs with 4 workers.\n\n"
            + b.table("d") + "\n![](paper-staleness.png)\n")

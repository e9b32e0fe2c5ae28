"""Unequal nodes, emulated (speeds 1,1,2,4; docs/allocation.md), all in one invocation:

- the ceiling: the emulated nodes alone for a few seconds (the same paced forward and
  backward passes at IDPA's batches, one process per node, no server, no communication, no
  evaluation): the most any training system reaches on this machine, since the emulation
  itself shares its cores; measured again before each seed's runs, and each run compared with
  its own round's, because this machine's speed drifts by a third within an hour (four
  calibrations at 02:24 read 141-147 us a sample, one at 02:25 read 109) and the sweep
  between a ceiling taken once at the start and the last runs lasts over an hour (measured
  in the runs' Ray session, whose own processes then idle);
- hetsync SSP+IDPA, BSP+uniform, BSP+IDPA and AGWU+IDPA, the plain asynchronous Ray
  parameter server, and PyTorch DDP with per-rank batches in proportion to speed (the peer
  a well-read user would pick for unequal nodes), on the same cluster and budget, each with
  its own learning rate and momentum from the same sweep (`Bench.tune`, in the report);
- (full mode) SSP+IDPA and AGWU+IDPA with worker 3 four times slower from 9 s to 19 s.

Each system is tuned once, then run with every seed of the budget (10 in full mode), seeds
interleaved across systems so that a slow spell of the machine falls on all of them; runs of
one system on this 2-core machine vary by several percent (docs/allocation.md), so the
summary gives means. Writes results.csv, report.md, a chart, and summary.json (keys read by
other tools)."""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from hetsync.bench.baselines import ddp_train, ray_ps_train
from hetsync.bench.harness import (
    TRAINING_SETTINGS,
    Bench,
    Budget,
    attempt,
    paced_steps,
    ratio,
    save,
    speeds_for,
    write,
)
from hetsync.cluster.runtime import ray_session
from hetsync.config import TrainConfig
from hetsync.core.devices import compute_process
from hetsync.core.partitioning import proportional_batches
from hetsync.data import load_dataset
from hetsync.emulation import StepPacer, emulated_cluster
from hetsync.models import build_model, resolve_model
from hetsync.run.evaluation import reached
from hetsync.run.train import train

# (quick, full). Ten seeds in full mode: with three, SSP+IDPA's time to 0.97 over BSP+uniform's
# read 1.85x, 1.94x and 2.63x by seed (docs/benchmarks-heterogeneous-ninth/); with five, 1.77x
# to 2.98x, a standard error of about 0.2 on the ratio of the means, 2.25x
# (docs/benchmarks-heterogeneous-eleventh/). Each seed's round takes about 4 minutes.
BUDGETS = (Budget(1500, 0.95, 1), Budget(3000, 0.97, 10))
MAIN = "speeds 1,1,2,4"
CEILING = "ceiling"  # the part of the ceiling's rows: one a seed, before that seed's runs
NODES_ALONE = "emulated nodes alone"  # the ceiling's case
RUN_SETTINGS = TRAINING_SETTINGS  # what `--config` may set for every run (and the ceiling)
CONFIGS = {
    # Without DC-ASGD's correction (--delay-compensation): over 28 seeds here it saved SSP+IDPA
    # 2-6% of its samples and cost it 1-4% of its throughput (docs/consistency.md)
    "ssp_idpa": dict(sync="ssp", staleness=3, allocation="idpa"),
    "bsp_uniform": dict(sync="bsp", allocation="uniform"),
    "bsp_idpa": dict(sync="bsp", allocation="idpa"),
    "agwu_idpa": dict(sync="ssp", staleness=3, allocation="idpa", update="agwu",
                      local_steps=8),
}
PEERS = {
    "plain_async_ps": lambda cfg: ray_ps_train(cfg, synchronous=False),
    "ddp_proportional": lambda cfg: ddp_train(cfg, proportional=True),
}
INTERFERENCE = "3@9s-19s:4"
# Time to target is also read at the grid of the invocations before the eleventh, 15
# snapshots a run (`Budget.evaluations`, `reached`), so that the same runs compare with them
COARSE_EVALUATIONS = 15
KEYS = ("ceiling_samples_per_s", "ideal_samples_per_s", "ssp_idpa_samples_per_s",
        "bsp_uniform_samples_per_s", "bsp_idpa_samples_per_s", "bsp_idpa_time_to_target_s",
        "plain_async_ps_samples_per_s", "ddp_proportional_samples_per_s",
        "ddp_proportional_time_to_target_s", "ssp_idpa_time_to_target_s",
        "bsp_uniform_time_to_target_s", "ssp_idpa_final_accuracy", "bsp_uniform_final_accuracy")


def _hetsync(cfg: TrainConfig) -> dict:
    result = train(cfg)
    return {**result.summary, "readings": [r for r in result.metrics if r["kind"] == "eval"]}


def _paced_node(cfg: TrainConfig, worker: int, pacer: StepPacer, batch: int, seconds: float,
                start_at: float, out) -> None:
    """One emulated node alone: paced forward and backward passes, nothing else."""
    compute_process(cfg.training.threads_per_worker)
    data, _ = load_dataset(cfg)
    model = build_model(resolve_model(cfg.training.model, data.sample_shape, data.classes),
                        cfg.training.seed)
    time.sleep(max(0.0, start_at - time.time()))
    out.put(paced_steps(model, data, batch, np.random.default_rng(worker),
                        until=start_at + seconds, pacer=pacer))


def emulation_ceiling(cfg: TrainConfig, seconds: float) -> dict:
    """Samples/s of the emulated nodes alone, against the ideal of the same calibration."""
    train_data, _ = load_dataset(cfg)
    model = build_model(resolve_model(cfg.training.model, train_data.sample_shape,
                                      train_data.classes), cfg.training.seed)
    cluster = emulated_cluster(cfg, model, train_data)
    batches = proportional_batches(cfg.training.workers * cfg.training.batch_size,
                                   [1 / v for v in cluster.speeds])
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 10.0  # every process loaded before the clock starts
    procs = [ctx.Process(target=_paced_node, args=(cfg, i, cluster.pacer(i), b, seconds,
                                                   start_at, out))
             for i, b in enumerate(batches)]
    for p in procs:
        p.start()
    total = sum(out.get() for _ in procs)
    for p in procs:
        p.join()
    ideal = cluster.ideal_samples_per_s()
    return {"batches": batches, "throughput_samples_per_s": total / seconds,
            "ideal_throughput_samples_per_s": ideal}


def run(b: Bench) -> list[Path]:
    """Measures the module docstring's cases: each system tuned, then, seed by seed, the
    ceiling and every system's run on speeds 1,1,2,4, and the interference runs (seed 0) in
    full mode only. Returns summary.json, the chart and report.md."""
    speeds = speeds_for(4)
    systems = {**{name: (_hetsync, setting) for name, setting in CONFIGS.items()},
               **{name: (peer, {}) for name, peer in PEERS.items()}}
    with ray_session(None, cpus=4):
        for name, (runner, setting) in systems.items():
            b.tune(name, runner, workers=4, speeds=speeds, **setting)
        for seed in range(b.budget.seeds):
            ceiling = emulation_ceiling(b.config(workers=4, speeds=speeds),
                                        10.0 if b.quick else 20.0)
            b.record(CEILING, NODES_ALONE, seed, ceiling,
                     batches=",".join(map(str, ceiling["batches"])))
            for name, (runner, setting) in systems.items():
                cfg = b.config(workers=4, speeds=speeds, seed=seed, **{**setting, **b.tuned[name]})
                s = attempt(runner, cfg)
                coarse = reached(s.get("readings"), b.budget.target, _coarse_every(cfg))
                b.record(MAIN, name, seed, s, **b.tuned[name],
                         **{k: s.get(k) for k in ("max_staleness_observed", "wait_fraction",
                                                  "allocation_changes")},
                         **{f"coarse_{k}": v for k, v in coarse.items()})
        if not b.quick:
            for name in ("ssp_idpa", "agwu_idpa"):
                s = attempt(_hetsync, b.config(workers=4, speeds=speeds,
                                               interference=INTERFERENCE,
                                               **{**CONFIGS[name], **b.tuned[name]}))
                b.record(f"{MAIN}, {INTERFERENCE}", name, 0, s,
                         allocation_changes=s.get("allocation_changes"))
    summary = summarize(b)
    path = b.out / "summary.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return [path, _chart(b, summary), write(b.out / "report.md", _report(b, summary))]


def _coarse_every(cfg: TrainConfig) -> int:
    """The iterations between snapshots at COARSE_EVALUATIONS a run (as `Bench.base`)."""
    return max(1, cfg.training.iterations // COARSE_EVALUATIONS)


def summarize(b: Bench) -> dict:
    """summary.json: the ceiling's and each system's means over the seeds on speeds 1,1,2,4.
    A time to target is the mean only where every seed reached the target, else None;
    `*_runs_reaching_target` says how many did."""
    summary = {"ceiling_samples_per_s": _ceiling(b, "throughput_samples_per_s")[0],
               "ideal_samples_per_s": _ceiling(b, "ideal_throughput_samples_per_s")[0],
               "seeds": b.budget.seeds}
    for metric, key in (("throughput_samples_per_s", "samples_per_s"),
                        ("final_val_accuracy", "final_accuracy")):
        for name, (mean, _, _) in b.stats(MAIN, metric).items():
            summary[f"{name}_{key}"] = mean
    for name, (mean, _, hits) in b.stats(MAIN, "time_to_target_s").items():
        summary[f"{name}_time_to_target_s"] = mean if hits == b.budget.seeds else None
        summary[f"{name}_runs_reaching_target"] = hits
    for name, (mean, _, hits) in b.stats(MAIN, "samples_to_target").items():
        summary[f"{name}_samples_to_target"] = mean if hits == b.budget.seeds else None
    for name, (mean, _, hits) in b.stats(MAIN, "coarse_time_to_target_s").items():
        summary[f"{name}_coarse_time_to_target_s"] = mean if hits == b.budget.seeds else None
    return {**{k: summary.get(k) for k in KEYS}, **summary}


def _ceiling(b: Bench, metric: str) -> tuple[float | None, float, int]:
    """The ceiling's (mean, spread, rounds) over its rounds, one a seed."""
    return b.stats(CEILING, metric)[NODES_ALONE]


def _chart(b: Bench, summary: dict) -> Path:
    stats = b.stats(MAIN, "throughput_samples_per_s")  # case -> (mean, spread, runs)
    names = list(stats)
    rates = [summary["ceiling_samples_per_s"],
             *[stats[n][0] or 0.0 for n in names]]  # 0: every seed diverged
    spread = [_ceiling(b, "throughput_samples_per_s")[1], *[stats[n][1] for n in names]]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.bar(["ceiling", *names], rates, yerr=spread, capsize=3,
           color=["tab:gray"] + ["tab:blue"] * len(names))
    ax.axhline(summary["ideal_samples_per_s"], color="black", linestyle="--", linewidth=1,
               label="ideal (sum of the nodes' rates)")
    ax.set_ylabel("samples/s")
    ax.set_title(f"speeds 1,1,2,4, 4 workers: throughput against the ceiling "
                 f"(mean ± spread of {b.budget.seeds} seed(s))")
    ax.tick_params(axis="x", labelrotation=25)
    ax.legend()
    return save(fig, b.out / "heterogeneous-throughput.png")


def _system_line(b: Bench, summary: dict, name: str, wait: float | None) -> str:
    """One system's throughput against the ceiling, the mean of each seed's ratio to its own
    round's ceiling (those ratios listed: the spread behind it), and against the ideal; its
    waiting where it has any, and how many runs reached the target. `wait`: its mean wait
    fraction, None for a peer."""
    runs = [r for r in b.rows if r["part"] == MAIN and r["case"] == name]
    rounds = {r["seed"]: r["throughput_samples_per_s"] for r in b.rows if r["part"] == CEILING}
    ratios = [None if r["throughput_samples_per_s"] is None
              else r["throughput_samples_per_s"] / rounds[r["seed"]] for r in runs]
    measured = [x for x in ratios if x is not None]  # a diverged run has no throughput
    mean = f"{sum(measured) / len(measured):.2f}x" if measured else "n/a (every run diverged)"
    per_seed = ", ".join("diverged" if x is None else f"{x:.3f}" for x in ratios)
    return (f"- {name}: mean throughput / ceiling {mean} (per seed: {per_seed}), "
            f"/ ideal {ratio(summary[f'{name}_samples_per_s'], summary['ideal_samples_per_s'])}; "
            + ("" if wait is None else f"waiting {wait:.1%} of the run; ")
            + f"{summary[f'{name}_runs_reaching_target']} of {len(runs)} run(s) reached "
            f"{b.budget.target}\n")


def _per_seed_times(b: Bench, a: str, over: str, metric: str = "time_to_target_s") -> str:
    """`a`'s time to target (`metric`) over `over`'s, seed by seed: the spread behind the ratio
    of the means, and a ratio where some seed missed the target."""
    times = {(r["case"], r["seed"]): r.get(metric) for r in b.rows if r["part"] == MAIN}
    return ", ".join(ratio(times.get((a, seed)), times.get((over, seed))).split(" ")[0]
                     for seed in range(b.budget.seeds))


def _coarse_line(b: Bench, summary: dict) -> str:
    """bsp_uniform / ssp_idpa's time to target read at COARSE_EVALUATIONS snapshots a run of
    the same runs, seed by seed, beside their samples to target so read."""
    both = ("bsp_uniform", "ssp_idpa")
    times = [summary.get(f"{n}_coarse_time_to_target_s") for n in both]
    means = {n: s[0] for n, s in b.stats(MAIN, "coarse_samples_to_target").items()}
    samples = ", ".join(f"{n} " + ("none" if means.get(n) is None else f"{means[n]:.0f}")
                        for n in both)
    return (f"- the same runs read at {COARSE_EVALUATIONS} snapshots a run, as the invocations "
            f"before the eleventh: bsp_uniform / ssp_idpa = {ratio(*times)} (per seed: "
            f"{_per_seed_times(b, *both, 'coarse_time_to_target_s')}); samples to "
            f"{b.budget.target} so read (means of the runs that reached it): {samples}\n")


def _samples_line(summary: dict, target: float) -> str:
    """Samples trained to the target beside the throughput: time to target is the samples it
    takes over the rate they come at, so bsp_uniform / ssp_idpa is SSP+IDPA's lead in
    throughput less what staleness costs it in samples (only roughly their product: the rate
    is the whole run's, the samples are known at the snapshots)."""
    bsp, ssp = (summary.get("bsp_uniform_samples_to_target"),
                summary.get("ssp_idpa_samples_to_target"))
    if bsp is None or ssp is None:
        return ""
    return (f"- samples trained to {target} (means of the seeds): bsp_uniform {bsp:.0f}, "
            f"ssp_idpa {ssp:.0f} (ssp_idpa / bsp_uniform {ratio(ssp, bsp)}); throughput over "
            f"the whole runs, ssp_idpa / bsp_uniform "
            f"{ratio(summary['ssp_idpa_samples_per_s'], summary['bsp_uniform_samples_per_s'])}\n")


def _report(b: Bench, summary: dict) -> str:
    wait = b.stats(MAIN, "wait_fraction")  # case -> (mean, spread, runs), one per system
    ttt = {n: summary[f"{n}_time_to_target_s"] for n in wait}
    return (b.header("hetsync bench heterogeneous")
            + "## Speeds 1,1,2,4, 4 workers\n\n"
            + "hetsync's systems: " + "; ".join(
                f"{n} ({', '.join(f'{k} {v}' for k, v in c.items())})"
                for n, c in CONFIGS.items()) + "\n\n"
            + b.table(CEILING, ("throughput_samples_per_s", "ideal_throughput_samples_per_s"))
            + "\n" + b.table(MAIN) + "\n"
            + "".join(_system_line(b, summary, n, w[0]) for n, w in wait.items())
            + "- ssp_idpa / plain_async_ps throughput: "
            f"{ratio(summary['ssp_idpa_samples_per_s'], summary['plain_async_ps_samples_per_s'])}"
            f"\n- mean time to {b.budget.target} (where every seed reached it): bsp_uniform / "
            f"ssp_idpa = {ratio(ttt['bsp_uniform'], ttt['ssp_idpa'])} (per seed: "
            f"{_per_seed_times(b, 'bsp_uniform', 'ssp_idpa')}); bsp_idpa / ssp_idpa = "
            f"{ratio(ttt['bsp_idpa'], ttt['ssp_idpa'])} (per seed: "
            f"{_per_seed_times(b, 'bsp_idpa', 'ssp_idpa')})\n"
            + _coarse_line(b, summary)
            + _samples_line(summary, b.budget.target)
            + "\n"
            + ("" if b.quick else f"## With interference {INTERFERENCE} (seed 0)\n\n"
               + b.table(f"{MAIN}, {INTERFERENCE}") + "\n")
            + "![](heterogeneous-throughput.png)\n\n" + b.sweep_table())

"""Unequal nodes, emulated (speeds 1,1,2,4; docs/allocation.md), all in one invocation:

- the ceiling: the emulated nodes alone for a few seconds (the same paced forward and
  backward passes at IDPA's batches, one process per node, no server, no communication, no
  evaluation): the most any training system reaches on this machine, since the emulation
  itself shares its cores;
- hetsync SSP+IDPA, BSP+uniform, BSP+IDPA and AGWU+IDPA, the plain asynchronous Ray
  parameter server, and PyTorch DDP with per-rank batches in proportion to speed (the peer a
  well-read user would pick for unequal nodes), on the same cluster and budget, each with its
  own learning rate and momentum from the same sweep (`Bench.tune`, in the report);
- (full mode) SSP+IDPA and AGWU+IDPA with worker 3 four times slower from 9 s to 19 s.

Writes results.csv, report.md, a chart, and summary.json (keys read by other tools)."""

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
from hetsync.run.train import train

BUDGETS = (Budget(1500, 0.95, 1), Budget(3000, 0.97, 1))  # (quick, full)
RUN_SETTINGS = TRAINING_SETTINGS  # what `--config` may set for every run (and the ceiling)
CONFIGS = {
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
KEYS = ("ceiling_samples_per_s", "ideal_samples_per_s", "ssp_idpa_samples_per_s",
        "bsp_uniform_samples_per_s", "bsp_idpa_samples_per_s", "bsp_idpa_time_to_target_s",
        "plain_async_ps_samples_per_s", "ddp_proportional_samples_per_s",
        "ddp_proportional_time_to_target_s", "ssp_idpa_time_to_target_s",
        "bsp_uniform_time_to_target_s", "ssp_idpa_final_accuracy", "bsp_uniform_final_accuracy")


def _hetsync(cfg: TrainConfig) -> dict:
    return train(cfg).summary


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
    """Measures the module docstring's cases: the ceiling (before Ray starts), then each system
    tuned and run on speeds 1,1,2,4, and the interference runs in full mode only. Returns
    summary.json, the chart and report.md."""
    speeds = speeds_for(4)
    ceiling = emulation_ceiling(b.config(workers=4, speeds=speeds), 10.0 if b.quick else 20.0)
    b.record("ceiling", "emulated nodes alone", 0, ceiling,
             batches=",".join(map(str, ceiling["batches"])))
    results = {}
    with ray_session(None, cpus=4):
        for name, setting in CONFIGS.items():
            tuned = b.tune(name, _hetsync, workers=4, speeds=speeds, **setting)
            s = train(b.config(workers=4, speeds=speeds, **{**setting, **tuned})).summary
            results[name] = b.record("speeds 1,1,2,4", name, 0, s, **tuned,
                                     max_staleness_observed=s["max_staleness_observed"],
                                     wait_fraction=s["wait_fraction"],
                                     allocation_changes=s["allocation_changes"])
        for name, peer in PEERS.items():
            tuned = b.tune(name, peer, workers=4, speeds=speeds)
            results[name] = b.record("speeds 1,1,2,4", name, 0,
                                     peer(b.config(workers=4, speeds=speeds, **tuned)), **tuned)
        if not b.quick:
            for name in ("ssp_idpa", "agwu_idpa"):
                s = train(b.config(workers=4, speeds=speeds, interference=INTERFERENCE,
                                   **{**CONFIGS[name], **b.tuned[name]})).summary
                b.record(f"speeds 1,1,2,4, {INTERFERENCE}", name, 0, s,
                         allocation_changes=s["allocation_changes"])
    summary = {"ceiling_samples_per_s": ceiling["throughput_samples_per_s"],
               "ideal_samples_per_s": ceiling["ideal_throughput_samples_per_s"]}
    for name, row in results.items():
        summary[f"{name}_samples_per_s"] = row["throughput_samples_per_s"]
        summary[f"{name}_time_to_target_s"] = row["time_to_target_s"]
        summary[f"{name}_final_accuracy"] = row["final_val_accuracy"]
    summary = {**{k: summary.get(k) for k in KEYS}, **summary}
    path = b.out / "summary.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return [path, _chart(b, results, ceiling), write(b.out / "report.md",
                                                     _report(b, results, summary))]


def _chart(b: Bench, results: dict, ceiling: dict) -> Path:
    names = ["ceiling", *results]
    rates = [ceiling["throughput_samples_per_s"],
             *[r["throughput_samples_per_s"] for r in results.values()]]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.bar(names, rates, color=["tab:gray"] + ["tab:blue"] * len(results))
    ax.axhline(ceiling["ideal_throughput_samples_per_s"], color="black", linestyle="--",
               linewidth=1, label="ideal (sum of the nodes' rates)")
    ax.set_ylabel("samples/s")
    ax.set_title("speeds 1,1,2,4, 4 workers: throughput against the ceiling")
    ax.tick_params(axis="x", labelrotation=25)
    ax.legend()
    return save(fig, b.out / "heterogeneous-throughput.png")


def _report(b: Bench, results: dict, summary: dict) -> str:
    ceil = summary["ceiling_samples_per_s"]
    ssp, bsp = results["ssp_idpa"], results["bsp_uniform"]
    return (b.header("hetsync bench heterogeneous")
            + "## Speeds 1,1,2,4, 4 workers\n\n"
            + b.table("ceiling", ("throughput_samples_per_s", "ideal_throughput_samples_per_s"))
            + "\n" + b.table("speeds 1,1,2,4") + "\n"
            + "".join(f"- {name}: throughput / ceiling "
                      f"{ratio(r['throughput_samples_per_s'], ceil)}, / ideal "
                      f"{ratio(r['throughput_samples_per_s'], summary['ideal_samples_per_s'])}\n"
                      for name, r in results.items())
            + f"- time to {b.budget.target}: bsp_uniform / ssp_idpa = "
            f"{ratio(bsp['time_to_target_s'], ssp['time_to_target_s'])}; bsp_idpa / ssp_idpa = "
            f"{ratio(results['bsp_idpa']['time_to_target_s'], ssp['time_to_target_s'])}\n\n"
            + ("" if b.quick else f"## With interference {INTERFERENCE}\n\n"
               + b.table(f"speeds 1,1,2,4, {INTERFERENCE}") + "\n")
            + "![](heterogeneous-throughput.png)\n\n" + b.sweep_table())

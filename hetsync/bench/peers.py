"""The same emulated cluster trained by PyTorch DDP (gloo), a plain Ray parameter server
(sync and async) and hetsync (BSP, SSP+IDPA, ASP, AGWU), each with its own learning rate and
momentum from the same sweep (`Bench.tune`, on speeds 1,1,2,4, in the report)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from hetsync.bench.baselines import ddp_train, ray_ps_train
from hetsync.bench.harness import (
    TRAINING_SETTINGS,
    Bench,
    Budget,
    against,
    bars,
    middle_third_slowdown,
    ratio,
    save,
    speeds_for,
    write,
)
from hetsync.cluster.runtime import ray_session
from hetsync.run.train import train

BUDGETS = (Budget(1500, 0.95, 1), Budget(3000, 0.97, 3))  # (quick, full)
RUN_SETTINGS = TRAINING_SETTINGS  # what `--config` may set for every run (and every peer)
PEER_RUNS = {
    "DDP (gloo)": ("ddp", {}),
    "plain Ray PS, sync": ("rayps-sync", {}),
    "plain Ray PS, async": ("rayps-async", {}),
    "hetsync BSP": ("hetsync", dict(sync="bsp")),
    "hetsync SSP+IDPA": ("hetsync", dict(sync="ssp", staleness=3, allocation="idpa")),
    "hetsync ASP": ("hetsync", dict(sync="asp")),
    "hetsync AGWU": ("hetsync", dict(sync="ssp", staleness=3, allocation="idpa", update="agwu",
                                     local_steps=8)),
}
RUNNERS = {
    "hetsync": lambda cfg: train(cfg).summary,
    "ddp": ddp_train,
    "rayps-sync": lambda cfg: ray_ps_train(cfg, synchronous=True),
    "rayps-async": lambda cfg: ray_ps_train(cfg, synchronous=False),
}


def run(b: Bench) -> list[Path]:
    """Tunes every system once on speeds 1,1,2,4, then runs each scenario over the budget's seeds
    (equal speeds: DDP, sync Ray PS and hetsync BSP only). Returns a chart per scenario and
    report.md."""
    n = 4
    scenarios = {
        "speeds 1,1,2,4": dict(speeds=speeds_for(n)),
        "speeds 1,1,2,4 + load": dict(speeds=speeds_for(n), interference=middle_third_slowdown(
            n, b.budget.iterations, worker=1)),
        "equal speeds": dict(speeds=(1.0,) * n),
    }
    with ray_session(None, cpus=n):
        for name, (kind, extra) in PEER_RUNS.items():  # each system's own lr and momentum
            b.tune(name, RUNNERS[kind], workers=n, **scenarios["speeds 1,1,2,4"], **extra)
        for scenario, setting in scenarios.items():
            names = PEER_RUNS if scenario != "equal speeds" else [
                "DDP (gloo)", "plain Ray PS, sync", "hetsync BSP"]
            for seed in range(b.budget.seeds):
                for name in names:
                    kind, extra = PEER_RUNS[name]
                    cfg = b.config(workers=n, seed=seed, **setting,
                                   **{**extra, **b.tuned[name]})
                    b.record(scenario, name, seed, RUNNERS[kind](cfg), **b.tuned[name])
    report = b.header("hetsync bench peers")
    paths = []
    for scenario in scenarios:
        fig, axes = plt.subplots(1, 3, figsize=(14, 4))
        for ax, metric, label in zip(axes, ("time_to_target_s", "throughput_samples_per_s",
                                            "final_val_accuracy"),
                                     (f"time to {b.budget.target} (s)", "samples/s",
                                      "final validation accuracy"), strict=True):
            bars(ax, b, scenario, metric)
            ax.set_ylabel(label)
        fig.suptitle(f"peers, 4 workers, {scenario}")
        slug = scenario.replace(" ", "-").replace(",", "").replace("+", "plus")
        paths.append(save(fig, b.out / f"peers-{slug}.png"))
        report += f"## {scenario}\n\n" + b.table(scenario) + f"\n![]({paths[-1].name})\n\n"
    ttt = b.stats("speeds 1,1,2,4", "time_to_target_s")
    thr = b.stats("equal speeds", "throughput_samples_per_s")
    ideal = b.stats("speeds 1,1,2,4", "ideal_throughput_samples_per_s")
    got = b.stats("speeds 1,1,2,4", "throughput_samples_per_s")
    report += ("## Ratios\n\n"
               f"- Speeds 1,1,2,4, time to {b.budget.target}: DDP / hetsync SSP+IDPA = "
               f"{against(ttt['DDP (gloo)'][0], ttt['hetsync SSP+IDPA'][0], 2)}\n"
               f"- Equal speeds, throughput: hetsync BSP / DDP = "
               f"{against(thr['hetsync BSP'][0], thr['DDP (gloo)'][0], 0.7)}\n"
               + "".join(f"- Speeds 1,1,2,4, {name} / DDP time to target: "
                         f"{ratio(ttt[name][0], ttt['DDP (gloo)'][0])}; throughput / ideal: "
                         f"{ratio(got[name][0], ideal[name][0])}\n" for name in PEER_RUNS))
    return [*paths, write(b.out / "report.md", report + "\n" + b.sweep_table())]

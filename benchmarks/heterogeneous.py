"""Heterogeneous cluster, emulated: SSP + IDPA against BSP with uniform allocation (and
optionally more configurations), measured one after the other in one run. Prints each run's
throughput against the cluster's ideal, its accuracy and time to the target, and the ratios.

    python benchmarks/heterogeneous.py --data-dir ../shared/datasets/mnist --speeds 1,1,2,4

`--ceiling S` first runs the emulated nodes alone for S seconds: the same paced forward and
backward passes at IDPA's batches, one process per worker, with no parameter server, no
communication and no evaluation. What they reach is the most any training system can reach on
this machine, since the emulation itself shares its cores (docs/allocation.md).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import hetsync
from hetsync.config import TrainConfig
from hetsync.data import load_dataset
from hetsync.heterogeneity import StepPacer, emulated_cluster
from hetsync.models import build_model, resolve_model
from hetsync.partitioning import proportional_batches

CONFIGS = {
    "ssp-idpa": dict(sync="ssp", staleness=3, allocation="idpa"),
    "bsp-uniform": dict(sync="bsp", allocation="uniform"),
    "ssp-uniform": dict(sync="ssp", staleness=3, allocation="uniform"),
    "agwu-idpa": dict(sync="ssp", staleness=3, allocation="idpa", update="agwu", local_steps=8,
                      lr=0.1),  # merges move 1/N of the way: a larger local rate (docs)
}


def _paced_node(cfg: TrainConfig, worker: int, pacer: StepPacer, batch: int, seconds: float,
                start_at: float, out: mp.Queue) -> None:
    """One emulated node alone: paced forward and backward passes, nothing else."""
    torch.set_num_threads(cfg.threads_per_worker)
    data, _ = load_dataset(cfg)
    model = build_model(resolve_model(cfg.model), cfg.seed)
    rng = np.random.default_rng(worker)
    time.sleep(max(0.0, start_at - time.time()))
    samples, it, end = 0, 0, start_at + seconds
    while time.time() < end:
        began = time.time()
        idx = rng.integers(0, len(data), batch)
        model.zero_grad()
        x, y = data.batch(idx)
        F.cross_entropy(model(x), y).backward()
        pacer.pace(began, batch, it)
        samples, it = samples + batch, it + 1
    out.put(samples)


def emulation_ceiling(cfg: TrainConfig, seconds: float) -> dict:
    """Samples/s of the emulated nodes alone, against the ideal of the same calibration."""
    train_data, _ = load_dataset(cfg)
    cluster = emulated_cluster(cfg, build_model(resolve_model(cfg.model), cfg.seed), train_data)
    batches = proportional_batches(cfg.workers * cfg.batch_size, [1 / v for v in cluster.speeds])
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
    return {"batches": batches, "samples_per_s": total / seconds,
            "ideal_samples_per_s": ideal, "ceiling_over_ideal": total / seconds / ideal}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="../shared/datasets/mnist")
    p.add_argument("--speeds", default="1,1,2,4")
    p.add_argument("--iterations", type=int, default=3000)
    p.add_argument("--interference", default="")
    p.add_argument("--configs", default="ssp-idpa,bsp-uniform")
    p.add_argument("--ceiling", type=float, default=0.0, metavar="SECONDS",
                   help="first measure the emulated nodes alone for this long (0: skip)")
    p.add_argument("--defer-eval", action="store_true",
                   help="evaluate the snapshots after each run instead of during it")
    p.add_argument("--out", default=None, help="write each run's outputs under this folder")
    args = p.parse_args()
    try:
        speeds = tuple(float(v) for v in args.speeds.split(","))
    except ValueError:
        p.error(f"--speeds {args.speeds!r}: expected numbers separated by commas, e.g. 1,1,2,4")
    names = [c for c in args.configs.split(",") if c]
    if unknown := [c for c in names if c not in CONFIGS]:
        p.error(f"unknown --configs {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    common = dict(dataset="mnist-10k", data_dir=args.data_dir, workers=len(speeds),
                  speeds=speeds, iterations=args.iterations, progress=False,
                  defer_eval=args.defer_eval)
    if args.ceiling > 0:
        ceiling = emulation_ceiling(TrainConfig(**common), args.ceiling)
        print("emulation-alone", json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                             for k, v in ceiling.items()}), flush=True)
    results = {}
    for name in names:
        res = hetsync.train(**common, interference=args.interference,
                            out=f"{args.out}/{name}" if args.out else None, **CONFIGS[name])
        s = res.summary
        row = {k: s[k] for k in ("throughput_samples_per_s", "ideal_throughput_samples_per_s",
                                 "final_val_accuracy", "best_val_accuracy", "time_to_target_s",
                                 "wall_time_s", "max_staleness_observed", "wait_fraction",
                                 "allocation_changes")}
        row["throughput_over_ideal"] = s["throughput_samples_per_s"] / s[
            "ideal_throughput_samples_per_s"]
        row["per_worker_samples"] = [w["samples"] for w in s["per_worker"]]
        results[name] = row
        print(name, json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                for k, v in row.items()}), flush=True)
    names = list(results)
    if len(names) >= 2:
        a, b = results[names[0]], results[names[1]]
        if a["time_to_target_s"] and b["time_to_target_s"]:
            print(f"time to target: {names[1]} / {names[0]} = "
                  f"{b['time_to_target_s'] / a['time_to_target_s']:.2f}")
        else:
            print("time to target: not reached by both runs", file=sys.stderr)


if __name__ == "__main__":
    main()

"""Heterogeneous cluster, emulated: SSP + IDPA against BSP with uniform allocation (and
optionally more configurations), measured one after the other in one run. Prints each run's
throughput against the cluster's ideal, its accuracy and time to the target, and the ratios.

    python benchmarks/heterogeneous.py --data-dir ../shared/datasets/mnist --speeds 1,1,2,4
"""

from __future__ import annotations

import argparse
import json
import sys

import hetsync

CONFIGS = {
    "ssp-idpa": dict(sync="ssp", staleness=3, allocation="idpa"),
    "bsp-uniform": dict(sync="bsp", allocation="uniform"),
    "ssp-uniform": dict(sync="ssp", staleness=3, allocation="uniform"),
    "agwu-idpa": dict(sync="ssp", staleness=3, allocation="idpa", update="agwu", local_steps=8,
                      lr=0.1),  # merges move 1/N of the way: a larger local rate (docs)
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="../shared/datasets/mnist")
    p.add_argument("--speeds", default="1,1,2,4")
    p.add_argument("--iterations", type=int, default=3000)
    p.add_argument("--interference", default="")
    p.add_argument("--configs", default="ssp-idpa,bsp-uniform")
    p.add_argument("--out", default=None, help="write each run's outputs under this folder")
    args = p.parse_args()
    speeds = tuple(float(v) for v in args.speeds.split(","))
    results = {}
    for name in args.configs.split(","):
        res = hetsync.train(dataset="mnist-10k", data_dir=args.data_dir, workers=len(speeds),
                            speeds=speeds, iterations=args.iterations,
                            interference=args.interference, progress=False,
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

"""One hetsync worker (SSP, so communication overlaps computation) against a plain
single-process PyTorch loop: same model, data, batch, optimizer and thread count, measured
side by side in one run. Prints samples/s of both, their ratio, and the per-iteration cost of
the parameter-server round trip as the worker saw it.

    python benchmarks/overhead.py --data-dir ../shared/datasets/mnist --iterations 2000
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

import hetsync
from hetsync.config import TrainConfig
from hetsync.data import load_dataset
from hetsync.models import build_model, resolve_model


def plain_loop(cfg: TrainConfig) -> float:
    """samples/s of the loop a user would write without a framework."""
    torch.set_num_threads(cfg.threads_per_worker)
    train, _ = load_dataset(cfg)
    model = build_model(resolve_model(cfg.model), cfg.seed)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    rng = np.random.default_rng(cfg.seed)
    start = time.perf_counter()
    for _ in range(cfg.iterations):
        idx = rng.integers(0, len(train), cfg.batch_size)
        x, y = torch.from_numpy(train.x[idx]), torch.from_numpy(train.y[idx])
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return cfg.iterations * cfg.batch_size / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="../shared/datasets/mnist")
    p.add_argument("--dataset", default="mnist-10k")
    p.add_argument("--iterations", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    cfg = TrainConfig(dataset=args.dataset, data_dir=args.data_dir, workers=1, sync="ssp",
                      staleness=3, iterations=args.iterations, eval_every=args.iterations,
                      threads_per_worker=args.threads, progress=False)
    rows = []
    for r in range(args.repeats):  # interleaved, so drifts in machine load hit both alike
        plain = plain_loop(cfg)
        res = hetsync.train(cfg)
        s = res.summary
        w = s["per_worker"][0]
        rows.append({
            "repeat": r,
            "plain_samples_per_s": round(plain, 1),
            "hetsync_samples_per_s": round(s["throughput_samples_per_s"], 1),
            "ratio": round(s["throughput_samples_per_s"] / plain, 3),
            "worker_compute_ms_per_it": round(1000 * w["compute_s"] / w["iterations"], 2),
            "worker_comm_ms_per_it": round(1000 * w["comm_s"] / w["iterations"], 2),
            "worker_wait_ms_per_it": round(1000 * w["wait_s"] / w["iterations"], 2),
            "plain_ms_per_it": round(1000 * cfg.batch_size / plain, 2),
        })
        print(json.dumps(rows[-1]), flush=True)
    ratios = [r["ratio"] for r in rows]
    print(f"hetsync / plain throughput: mean {np.mean(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}) over {len(rows)} repeats")


if __name__ == "__main__":
    main()

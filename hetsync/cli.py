"""Command line: `hetsync train ...`. Flags map one to one onto TrainConfig fields."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from hetsync.config import SYNC_MODES, TrainConfig
from hetsync.errors import HetsyncError


def _train_parser(sub) -> None:
    d = TrainConfig()
    p = sub.add_parser("train", help="train a model (starts a local Ray instance by default)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default=d.model, help="registered model name")
    p.add_argument("--dataset", default=d.dataset, help="mnist, mnist-10k or synthetic")
    p.add_argument("--data-dir", default=d.data_dir, help="folder with the MNIST IDX files")
    p.add_argument("--workers", type=int, default=d.workers, help="number of worker replicas")
    p.add_argument("--sync", default=d.sync, help=f"consistency model: {', '.join(SYNC_MODES)}")
    p.add_argument("--staleness", type=int, default=d.staleness,
                   help="SSP bound: iterations a worker may run ahead of the slowest")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="per worker")
    p.add_argument("--lr", type=float, default=d.lr, help="server SGD learning rate")
    p.add_argument("--momentum", type=float, default=d.momentum, help="server SGD momentum")
    p.add_argument("--lr-schedule", default=d.lr_schedule,
                   help="cosine (decay to lr/10 over the budget) or constant")
    p.add_argument("--iterations", type=int, default=d.iterations,
                   help="global budget of mini-batch gradients, all workers together")
    p.add_argument("--eval-every", type=int, default=d.eval_every,
                   help="evaluate a weight snapshot every N applied gradients")
    p.add_argument("--defer-eval", action="store_true",
                   help="evaluate the snapshots after the run, not during it (no live accuracy; "
                        "training keeps the CPU)")
    p.add_argument("--target-accuracy", type=float, default=d.target_accuracy,
                   help="validation accuracy whose first crossing is timed")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", default=d.out, help="output directory (metrics, summary, weights)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the outputs of an earlier run in --out")
    p.add_argument("--address", default=d.address,
                   help="join this Ray cluster ('auto' or host:port) instead of starting one")
    p.add_argument("--threads-per-worker", type=int, default=d.threads_per_worker,
                   help="PyTorch intra-op threads per worker")
    p.add_argument("--timeout", dest="timeout_s", type=float, default=d.timeout_s,
                   help="seconds any single wait may take before the run stops")
    p.add_argument("--synthetic-samples", type=int, default=d.synthetic_samples,
                   help="training samples of the synthetic dataset")
    p.add_argument("--speeds", default=None,
                   help="emulated step-time multiplier per worker, e.g. 1,1,2,4")
    p.add_argument("--reference-slowdown", type=float, default=d.reference_slowdown,
                   help="reference node's time per sample over this machine's (1..2)")
    p.add_argument("--interference", default=d.interference,
                   help="slowdowns W@START[-END]:FACTOR,... (START/END in s with 's', "
                        "else iterations), e.g. 3@10s-20s:4")
    p.add_argument("--cpu-hogs", default=d.cpu_hogs,
                   help="workers that get a real busy-loop process pinned beside them, e.g. 3")
    p.add_argument("--allocation", default=d.allocation, help="uniform or idpa")
    p.add_argument("--update", default=d.update, help="sgd (push gradients) or agwu")
    p.add_argument("--local-steps", type=int, default=d.local_steps,
                   help="AGWU: local steps between pushes")
    p.add_argument("--gamma", type=float, default=d.gamma,
                   help="AGWU: attenuation of a stale push, gamma**lag")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                   help="write a checkpoint to --out every N iterations (0: never)")
    p.add_argument("--resume", default=d.resume, metavar="DIR",
                   help="continue the run saved in DIR from its last checkpoint (same settings)")
    p.add_argument("--max-restarts", type=int, default=d.max_restarts,
                   help="restart a worker whose process dies up to R times (0: go on without it)")
    p.add_argument("--kill-worker", default=d.kill_worker,
                   help="fault injection: kill worker W's process at its iteration I, W@I")
    p.add_argument("--kill-server", default=d.kill_server,
                   help="fault injection: kill the parameter server's process at iteration I, @I")
    p.add_argument("--quiet", action="store_true", help="no progress line")


def _plot_parser(sub) -> None:
    p = sub.add_parser("plot", help="charts of finished runs: accuracy over time, worker "
                                    "timelines, staleness histograms")
    p.add_argument("runs", nargs="+", help="run folders written by `hetsync train --out`")
    p.add_argument("--out", default="plots", help="folder for the PNG files")


def _bench_parser(sub) -> None:
    from hetsync.bench import SUITES

    p = sub.add_parser("bench", help="measured comparisons: results.csv, PNG charts, report.md")
    p.add_argument("suite", choices=SUITES)
    p.add_argument("--out", required=True, help="folder for the results")
    p.add_argument("--data-dir", default="../shared/datasets/mnist",
                   help="folder with the MNIST IDX files (mnist-10k)")
    p.add_argument("--quick", action="store_true", help="smaller budgets: within 10 minutes")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hetsync", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _plot_parser(sub)
    _bench_parser(sub)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    fields = {k: v for k, v in vars(args).items() if k not in ("command", "debug", "quiet")}
    return TrainConfig(progress=not args.quiet, **fields)


def _train(args: argparse.Namespace) -> int:
    from hetsync.engine import train

    result = train(config_from_args(args))
    s = result.summary
    keys = ("sync", "workers", "iterations", "wall_time_s", "final_val_accuracy",
            "time_to_target_s", "max_staleness_observed", "max_version_lag",
            "throughput_samples_per_s", "ideal_throughput_samples_per_s", "wait_fraction")
    print(json.dumps({k: s[k] for k in keys}, indent=2))
    return 0


def _plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hetsync.plots import plot_runs

    for path in plot_runs([Path(r) for r in args.runs], Path(args.out)):
        print(path)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hetsync.bench import run_suite

    for path in run_suite(args.suite, Path(args.out), args.data_dir, args.quick):
        print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"train": _train, "plot": _plot, "bench": _bench}[args.command](args)
    except HetsyncError as e:
        if args.debug:
            raise
        print(f"hetsync: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hetsync: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

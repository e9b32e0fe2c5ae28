"""Train a small residual network with batch norm on CIFAR-10 binary files with two
heterogeneous workers, then load the saved model as a user would and check that its accuracy
is the one the run reported.

    python examples/cifar10_heterogeneous.py --data-dir DIR --out runs/cifar10

DIR holds data_batch_1.bin .. data_batch_5.bin and test_batch.bin (or is where they are
downloaded to). The settings are those of cifar10-heterogeneous.toml beside this file; the
options below go on top of them.
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

import torch

import hetsync
from hetsync.data import load_dataset
from hetsync.models import build_model, resolve_model
from hetsync.run.evaluation import evaluate

CONFIG = Path(__file__).with_name("cifar10-heterogeneous.toml")


def main(argv: list[str] | None = None) -> dict:
    """Run the example; returns the run's summary (what summary.json holds)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True, help="folder with the CIFAR-10 .bin files")
    p.add_argument("--out", required=True, help="folder for the run's files (model.pt, ...)")
    p.add_argument("--config", default=str(CONFIG), help="the settings (TOML)")
    p.add_argument("--iterations", type=int, help="a budget other than the file's")
    p.add_argument("--batch-size", type=int, help="a batch size other than the file's")
    args = p.parse_args(argv)
    given = {"iterations": args.iterations, "batch_size": args.batch_size}
    cfg = hetsync.TrainConfig.from_dict(
        tomllib.loads(Path(args.config).read_text()), data_dir=args.data_dir, out=args.out,
        **{k: v for k, v in given.items() if v is not None})

    result = hetsync.train(cfg)
    s = result.summary
    print(f"validation accuracy {s['final_val_accuracy']:.4f} after {s['iterations']} "
          f"iterations in {s['wall_time_s']:.1f} s")
    for w in s["per_worker"]:
        print(f"  worker {w['worker']} (speed x{s['speeds'][w['worker']]:g}): "
              f"{w['samples']} samples, waited {w['wait_s']:.1f} s of {w['total_s']:.1f} s")

    # model.pt as a user would load it: the network built for the data's shape and classes,
    # the weights and batch norm's running statistics from the file
    train, val = load_dataset(cfg)
    model = build_model(resolve_model(cfg.training.model, train.sample_shape, train.classes), 0)
    model.load_state_dict(torch.load(Path(args.out) / "model.pt", weights_only=True))
    saved = evaluate(model, val)[1]
    print(f"model.pt: validation accuracy {saved:.4f} (the run reported "
          f"{s['final_val_accuracy']:.4f})")
    return {**s, "saved_model_val_accuracy": saved}


if __name__ == "__main__":
    main()

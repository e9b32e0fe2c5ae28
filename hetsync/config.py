"""The one typed configuration behind both the CLI and `hetsync.train(...)`.

Field names match the CLI flags (`--batch-size` is `batch_size`). Validation happens once, in
`__post_init__`, and every message names the setting to change.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hetsync.errors import ConfigError
from hetsync.heterogeneity import Interference, parse_interference, parse_speeds
from hetsync.partitioning import ALLOCATIONS
from hetsync.updates import LR_SCHEDULES, UPDATES

SYNC_MODES = ("bsp", "ssp", "asp")


@dataclass(frozen=True)
class TrainConfig:
    # What to train: a registered name ("lenet5") or any zero-argument nn.Module factory.
    model: str | Callable[[], Any] = "lenet5"
    # A registered name ("mnist", "mnist-10k", "synthetic") or a map-style torch Dataset
    # yielding (input tensor, integer label).
    dataset: Any = "mnist-10k"
    # Validation set for a user-supplied dataset; None holds out 10% of `dataset`.
    val_dataset: Any = None
    # Where the IDX files live (registered MNIST datasets).
    data_dir: str | None = None
    # Number of worker replicas.
    workers: int = 4
    # Consistency model: bsp (barrier every iteration), ssp (bounded delay), asp (never wait).
    sync: str = "ssp"
    # SSP bound: a worker may be at most this many iterations ahead of the slowest one.
    staleness: int = 3
    # Mini-batch size per worker and iteration.
    batch_size: int = 64
    # Learning rate of the server's SGD for one mini-batch of `batch_size` samples (an update
    # merging k samples uses lr * k / batch_size), and its momentum. Momentum is kept moderate
    # because asynchronous updates already add implicit momentum (docs/consistency.md).
    lr: float = 0.02
    momentum: float = 0.5
    # How the learning rate moves over the budget: cosine (down to lr/10 at the end, so the
    # final weights are not one stale update's accident) or constant.
    lr_schedule: str = "cosine"
    # Global budget: mini-batch gradients computed by all workers together.
    iterations: int = 3000
    # Evaluate a weight snapshot every this many applied gradients.
    eval_every: int = 100
    # Evaluate the snapshots after the run (and at each checkpoint) instead of as they come:
    # no live accuracy, but no CPU taken from training, and each snapshot keeps its own time,
    # so time_to_target_s is the same measurement. Benchmarks use it: on shared cores the
    # evaluator competes with the workers, and the peers are evaluated after their runs too.
    defer_eval: bool = False
    # Validation accuracy whose first crossing is reported as time_to_target_s.
    target_accuracy: float = 0.97
    seed: int = 0
    # Output directory for metrics.jsonl, summary.json and model.pt; None writes nothing.
    out: str | None = None
    # Replace the outputs of an earlier run in `out` (otherwise such a folder is refused).
    overwrite: bool = False
    # Address of an existing Ray cluster ("auto" or "host:port"); None starts a local one.
    address: str | None = None
    # PyTorch intra-op threads per worker (the inner layer of parallelism).
    threads_per_worker: int = 1
    # Seconds any single wait (barrier, staleness gate, actor call) may take before the run
    # stops with an error naming the worker that is late.
    timeout_s: float = 300.0
    # Heterogeneity (docs/allocation.md). Emulated step-time multiplier per worker, e.g.
    # (1, 1, 2, 4); None runs every worker at this machine's natural speed.
    speeds: tuple[float, ...] | None = None
    # The reference node (multiplier 1) is this many times slower per sample than this
    # machine's measured single-thread compute (1..2, so communication stays visible).
    reference_slowdown: float = 2.0
    # Injected slowdowns, "W@START[-END]:FACTOR,..." (times in seconds with "s").
    interference: str = ""
    # Workers that get a real CPU-hog process pinned beside them, e.g. "3" or "0,2".
    cpu_hogs: str = ""
    # Work allocation: uniform batches, or IDPA (batches proportional to measured speed), for
    # unequal nodes. Uniform is the default: on equal nodes IDPA's noisy rate measurements
    # moved batches by +-15% and made SSP's accuracy jumpy (docs/allocation.md).
    allocation: str = "uniform"
    # Update rule: sgd (push gradients) or agwu (push weights after local_steps local steps,
    # merged with attenuation gamma**lag).
    update: str = "sgd"
    local_steps: int = 8
    gamma: float = 0.9
    # Fault tolerance (docs/reliability.md). Write a checkpoint to `out` every this many
    # iterations (0: never); continue the run saved in this folder; restart a worker whose
    # process dies up to this many times (0: the survivors go on without it).
    checkpoint_every: int = 500
    resume: str | None = None
    max_restarts: int = 0
    # Fault injection, real process kills: worker W once its clock reaches I ("W@I,..."); the
    # parameter server once the run has done I iterations ("@I").
    kill_worker: str = ""
    kill_server: str = ""
    # Print a progress line while training.
    progress: bool = True
    # Fields set by the front door, not by users: the synthetic dataset's size.
    synthetic_samples: int = field(default=4096, repr=False)

    def __post_init__(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ConfigError(msg)

        need(isinstance(self.workers, int) and self.workers >= 1,
             f"--workers must be at least 1 (got {self.workers})")
        need(self.sync in SYNC_MODES,
             f"--sync must be one of {', '.join(SYNC_MODES)} (got {self.sync!r})")
        need(isinstance(self.staleness, int) and self.staleness >= 0,
             f"--staleness must be a non-negative integer (got {self.staleness})")
        need(isinstance(self.batch_size, int) and self.batch_size >= 1,
             f"--batch-size must be at least 1 (got {self.batch_size})")
        need(isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0,
             f"--lr must be a finite number > 0 (got {self.lr})")
        need(self.lr_schedule in LR_SCHEDULES,
             f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)} (got {self.lr_schedule!r})")
        need(math.isfinite(self.momentum) and 0 <= self.momentum < 1,
             f"--momentum must be in [0, 1) (got {self.momentum})")
        need(isinstance(self.iterations, int) and self.iterations >= 1,
             f"--iterations must be at least 1 (got {self.iterations})")
        need(isinstance(self.eval_every, int) and self.eval_every >= 1,
             f"--eval-every must be at least 1 (got {self.eval_every})")
        need(0 < self.target_accuracy <= 1,
             f"--target-accuracy must be in (0, 1] (got {self.target_accuracy})")
        need(isinstance(self.threads_per_worker, int) and self.threads_per_worker >= 1,
             f"--threads-per-worker must be at least 1 (got {self.threads_per_worker})")
        need(self.timeout_s > 0, f"--timeout must be > 0 seconds (got {self.timeout_s})")
        if isinstance(self.speeds, str):
            object.__setattr__(self, "speeds", parse_speeds(self.speeds))
        if self.speeds is not None:
            object.__setattr__(self, "speeds", tuple(float(v) for v in self.speeds))
            need(len(self.speeds) == self.workers,
                 f"--speeds has {len(self.speeds)} values for {self.workers} workers")
            need(all(math.isfinite(v) and v > 0 for v in self.speeds),
                 f"--speeds must all be finite and > 0 (got {self.speeds})")
        need(1.0 <= self.reference_slowdown <= 2.0,
             f"--reference-slowdown must be in [1, 2] (got {self.reference_slowdown})")
        windows = parse_interference(self.interference)
        bad = [w.worker for w in windows if w.worker >= self.workers]
        need(not bad, f"--interference names worker {bad[0] if bad else 0}, but workers are "
                      f"0..{self.workers - 1}")
        need(all(h.strip().isdigit() and int(h) < self.workers
                 for h in self.cpu_hogs.split(",") if h.strip()),
             f"--cpu-hogs must list worker ids below {self.workers} (got {self.cpu_hogs!r})")
        try:
            kills = self.worker_kills
        except ValueError:
            raise ConfigError(f"--kill-worker must be W@ITERATION[,...] (got "
                              f"{self.kill_worker!r})") from None
        need(all(0 <= w < self.workers for w, _ in kills),
             f"--kill-worker names a worker outside 0..{self.workers - 1}")
        need(len(kills) < self.workers or self.max_restarts > 0,
             "--kill-worker would kill every worker (and --max-restarts is 0)")
        need(isinstance(self.checkpoint_every, int) and self.checkpoint_every >= 0,
             f"--checkpoint-every must be >= 0 (got {self.checkpoint_every})")
        need(isinstance(self.max_restarts, int) and self.max_restarts >= 0,
             f"--max-restarts must be >= 0 (got {self.max_restarts})")
        if self.resume is not None:
            need(self.out in (None, self.resume),
                 f"--resume {self.resume} continues that folder; drop --out {self.out}")
            need(not self.overwrite, "--resume and --overwrite exclude each other")
            object.__setattr__(self, "out", self.resume)
        need(self.kill_server == "" or self.server_kill is not None,
             f"--kill-server must be @ITERATION (got {self.kill_server!r})")
        need(self.server_kill is None or (self.out and self.checkpoint_every > 0),
             "--kill-server needs --out and --checkpoint-every: a lost server restarts from "
             "the last checkpoint")
        need(self.allocation in ALLOCATIONS,
             f"--allocation must be one of {', '.join(ALLOCATIONS)} (got {self.allocation!r})")
        need(self.update in UPDATES,
             f"--update must be one of {', '.join(UPDATES)} (got {self.update!r})")
        need(isinstance(self.local_steps, int) and self.local_steps >= 1,
             f"--local-steps must be at least 1 (got {self.local_steps})")
        need(0 < self.gamma <= 1, f"--gamma must be in (0, 1] (got {self.gamma})")
        if isinstance(self.model, str):
            from hetsync.models import MODELS

            need(self.model in MODELS,
                 f"unknown model {self.model!r}; choose one of {', '.join(sorted(MODELS))} "
                 "or pass an nn.Module factory")
        else:
            need(callable(self.model), "model must be a registered name or an nn.Module factory")
        if isinstance(self.dataset, str):
            from hetsync.data import DATASETS

            need(self.dataset in DATASETS,
                 f"unknown dataset {self.dataset!r}; choose one of {', '.join(sorted(DATASETS))} "
                 "or pass a torch Dataset")
        else:
            need(hasattr(self.dataset, "__getitem__") and hasattr(self.dataset, "__len__"),
                 "dataset must be a registered name or a map-style Dataset (__getitem__, __len__)")

    @property
    def bound(self) -> int | None:
        """How many iterations a worker may run ahead of the slowest: 0, S, or unbounded."""
        return {"bsp": 0, "ssp": self.staleness, "asp": None}[self.sync]

    @property
    def agwu_local_steps(self) -> int:
        """Local steps between pushes under AGWU; 0 means workers push every gradient."""
        return self.local_steps if self.update == "agwu" else 0

    @property
    def gradients_per_push(self) -> int:
        """Gradients sent per message. Two halve the per-call cost, but each extra gradient in
        flight adds about one version of lag per worker. So: 2 under SSP when the resulting
        lag, about 3N - 1 versions, stays within the bound S (in practice one worker); else 1.
        Measured on 4 workers, coalescing cost accuracy: ASP 0.83 instead of 0.9765, and SSP
        with IDPA on unequal nodes 0.9685 instead of 0.9785 (docs/consistency.md)."""
        if self.sync == "ssp" and self.update == "sgd" and 3 * self.workers - 1 <= self.staleness:
            return 2
        return 1

    @property
    def overlap_pushes(self) -> bool:
        """Whether a worker computes its next gradient while its last push travels. That hides
        the round trip, but the gradient then misses the worker's own last update and the
        others' updates of one more step: the version lag grows from about N-1 to 2N-1, and
        stale SGD's stable step shrinks with the lag. Measured on 4 workers, speeds 1,1,2,4,
        SSP S=3 + IDPA: with overlap lag 14, and one of two runs stalled at 0.11 accuracy for
        300 iterations (final 0.906); without, lag 6 and 0.976-0.978 in both, at the same
        throughput within noise (docs/consistency.md). So only where 2N-1 fits the bound."""
        bound = self.bound if self.bound is not None else 0
        return self.update == "sgd" and 2 * self.workers - 1 <= max(bound, 1)

    @property
    def interference_windows(self) -> tuple[Interference, ...]:
        return parse_interference(self.interference)

    @property
    def worker_kills(self) -> list[tuple[int, int]]:
        return [(int(w), int(i)) for w, i in
                (part.split("@") for part in self.kill_worker.split(",") if part.strip())]

    @property
    def server_kill(self) -> int | None:
        at = self.kill_server.strip()
        return int(at[1:]) if at.startswith("@") and at[1:].isdigit() else None

    @property
    def hogged_workers(self) -> set[int]:
        return {int(h) for h in self.cpu_hogs.split(",") if h.strip()}

    @property
    def out_dir(self) -> Path | None:
        return Path(self.out) if self.out else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view for summary.json: objects (model factories, datasets) by name."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}  # asdict would deep-copy datasets
        for key in ("model", "dataset", "val_dataset"):
            v = d[key]
            if v is not None and not isinstance(v, str):
                d[key] = getattr(v, "__name__", type(v).__name__)
        return d

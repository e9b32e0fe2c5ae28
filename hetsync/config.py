"""The one typed configuration behind the CLI and `hetsync.train(...)`.

One frozen section per component, each validated in its own `__post_init__` with messages
that name the flag; `TrainConfig` holds the sections and checks what spans several. Every
field carries its help text (`setting`), from which `hetsync.cli` generates the flags: one
source for names, defaults and help. A field's flat name is its flag without dashes
(`--batch-size` is `batch_size`), which is also the keyword of `TrainConfig.from_flat` and
`hetsync.train(...)`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from hetsync.core.devices import DEVICES, gpus_per_worker, parse_gpus
from hetsync.core.partitioning import ALLOCATIONS
from hetsync.core.updates import LR_SCHEDULES, UPDATES
from hetsync.data import DATASETS, IMAGE_MODES
from hetsync.emulation import Interference, parse_interference, parse_speeds
from hetsync.errors import ConfigError
from hetsync.models import MODELS

TRANSPORTS = ("gloo", "gloo-tcp", "ray")
SYNC_MODES = ("bsp", "ssp", "asp")


def setting(default: Any, help: str, *, flat: str | None = None, flag: str | None = None,
            values: tuple[str, ...] | None = None, metavar: str | None = None,
            cli: bool = True) -> Any:
    """A config field with its help text. `flat` renames its keyword, `flag` its CLI flag;
    `values` lists the allowed ones and `metavar` shows the form (both in --help);
    `cli=False` keeps it Python-only."""
    return field(default=default, metadata={"help": help, "flat": flat, "flag": flag,
                                            "values": values, "metavar": metavar, "cli": cli})


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _positive_int(value: Any, flag: str, least: int = 1) -> None:
    _need(isinstance(value, int) and not isinstance(value, bool) and value >= least,
          f"{flag} must be {'at least 1' if least == 1 else f'>= {least}'} (got {value})")


@dataclass(frozen=True)
class TrainingConfig:
    """What is trained, by how many workers, for how long."""

    model: str | Callable[[], Any] = setting(
        "lenet5", "registered model, or from Python any zero-argument nn.Module factory",
        values=tuple(sorted(MODELS)))
    workers: int = setting(4, "number of worker replicas")
    batch_size: int = setting(64, "mini-batch size per worker and iteration")
    iterations: int = setting(3000, "global budget: mini-batch gradients computed by all "
                                    "workers together")
    seed: int = setting(0, "seeds the initial weights, the data order and the synthetic data")
    threads_per_worker: int = setting(1, "PyTorch intra-op threads per worker (the inner "
                                         "layer of parallelism)")

    def __post_init__(self) -> None:
        if isinstance(self.model, str):
            _need(self.model in MODELS, f"unknown model {self.model!r}; choose one of "
                  f"{', '.join(sorted(MODELS))} or pass an nn.Module factory")
        elif isinstance(self.model, torch.nn.Module):
            raise ConfigError(f"model is an nn.Module instance ({type(self.model).__name__}); "
                              "pass a factory that builds one, such as the class itself: every "
                              "worker builds its own replica")
        else:
            _need(callable(self.model), "model must be a registered name or an nn.Module factory")
        _positive_int(self.workers, "--workers")
        _positive_int(self.batch_size, "--batch-size")
        _positive_int(self.iterations, "--iterations")
        _need(isinstance(self.seed, int), f"--seed must be an integer (got {self.seed!r})")
        _positive_int(self.threads_per_worker, "--threads-per-worker")


@dataclass(frozen=True)
class DataConfig:
    """Where the samples come from."""

    dataset: Any = setting(
        "mnist-10k", "registered dataset, or from Python any map-style Dataset of (tensor, "
        "int label)", values=tuple(sorted(DATASETS)))
    val_dataset: Any = setting(None, "validation Dataset for a dataset passed as an object "
                                     "(None holds out 10%)", cli=False)
    data_dir: str | None = setting(None, "folder with the dataset's files: the MNIST files "
                                         "(mnist, mnist-10k), any IDX train/t10k pair (idx), "
                                         "CIFAR-10's binary batches (cifar10), one sub-folder "
                                         "of PNG or JPEG images per class (folder)",
                                   metavar="DIR")
    synthetic_samples: int = setting(4096, "training samples of the synthetic dataset")
    val_fraction: float = setting(
        0.2, "share held out for validation where the data has no split of its own (idx with "
             "one pair of files, folder), by a fixed permutation that does not move with "
             "--seed")
    image_size: int = setting(32, "folder: every image is resized to N x N pixels (28 or 32 "
                                  "for lenet5; any for resnet-small)")
    image_mode: str = setting("auto", "folder: colour mode of the inputs, rgb (3 channels), "
                                      "grey (1), or auto: grey if every image is",
                              values=IMAGE_MODES)

    def __post_init__(self) -> None:
        if isinstance(self.dataset, str):
            _need(self.dataset in DATASETS, f"unknown dataset {self.dataset!r}; choose one of "
                  f"{', '.join(sorted(DATASETS))} or pass a torch Dataset")
            _need(self.val_dataset is None, "val_dataset goes with a dataset passed as an "
                  f"object; the registered {self.dataset!r} brings its own validation split")
        else:
            _need(hasattr(self.dataset, "__getitem__") and hasattr(self.dataset, "__len__"),
                  "dataset must be a registered name or a map-style Dataset (__getitem__, "
                  "__len__)")
        _positive_int(self.synthetic_samples, "--synthetic-samples")
        _need(isinstance(self.val_fraction, (int, float)) and 0 < self.val_fraction < 1,
              f"--val-fraction must be between 0 and 1, both excluded (got {self.val_fraction})")
        _positive_int(self.image_size, "--image-size", least=8)
        _need(self.image_mode in IMAGE_MODES, f"--image-mode must be one of "
              f"{', '.join(IMAGE_MODES)} (got {self.image_mode!r})")


@dataclass(frozen=True)
class ConsistencyConfig:
    """How far workers may drift apart (docs/consistency.md)."""

    sync: str = setting("ssp", "consistency model: bsp (barrier every iteration), ssp (a "
                               "worker runs at most --staleness ahead), asp (never wait)",
                        values=SYNC_MODES)
    staleness: int = setting(3, "SSP bound: iterations a worker may run ahead of the slowest")

    def __post_init__(self) -> None:
        _need(self.sync in SYNC_MODES,
              f"--sync must be one of {', '.join(SYNC_MODES)} (got {self.sync!r})")
        _need(isinstance(self.staleness, int) and self.staleness >= 0,
              f"--staleness must be a non-negative integer (got {self.staleness})")

    @property
    def bound(self) -> int | None:
        """How many iterations a worker may run ahead of the slowest: 0, S, or unbounded."""
        return {"bsp": 0, "ssp": self.staleness, "asp": None}[self.sync]


@dataclass(frozen=True)
class AllocationConfig:
    """How data and batches are split among workers (docs/allocation.md)."""

    mode: str = setting(
        "uniform", "uniform batches, or idpa: batches and data in proportion to each "
        "worker's measured speed, for unequal nodes (on equal nodes its noisy measurements "
        "only move batches around)", flat="allocation", values=ALLOCATIONS)

    def __post_init__(self) -> None:
        _need(self.mode in ALLOCATIONS,
              f"--allocation must be one of {', '.join(ALLOCATIONS)} (got {self.mode!r})")


@dataclass(frozen=True)
class UpdateConfig:
    """How the server turns pushes into new weights (docs/consistency.md)."""

    rule: str = setting("sgd", "sgd: push gradients; agwu: push weights after --local-steps "
                               "local steps, merged with attenuation --gamma**lag",
                        flat="update", values=UPDATES)
    lr: float = setting(0.02, "learning rate for one mini-batch of --batch-size samples (a "
                              "gradient of k samples counts k / batch size)")
    momentum: float = setting(0.5, "SGD momentum (moderate: asynchronous updates add "
                                   "implicit momentum)")
    lr_schedule: str = setting("cosine", "cosine: decay to lr/10 over the budget; constant",
                               values=LR_SCHEDULES)
    local_steps: int = setting(8, "AGWU: local steps between pushes")
    gamma: float = setting(0.9, "AGWU: attenuation of a push that is lag versions stale, "
                                "gamma**lag")
    delay_compensation: float = setting(
        0.0, "sgd under SSP and ASP: DC-ASGD's correction of a stale gradient, "
             "g + lambda*g*g*(w - w_pulled) with lambda = this / sqrt(mean square of g); 0: off")

    def __post_init__(self) -> None:
        _need(self.rule in UPDATES,
              f"--update must be one of {', '.join(UPDATES)} (got {self.rule!r})")
        _need(isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0,
              f"--lr must be a finite number > 0 (got {self.lr})")
        _need(math.isfinite(self.momentum) and 0 <= self.momentum < 1,
              f"--momentum must be in [0, 1) (got {self.momentum})")
        _need(self.lr_schedule in LR_SCHEDULES, f"--lr-schedule must be one of "
              f"{', '.join(LR_SCHEDULES)} (got {self.lr_schedule!r})")
        _positive_int(self.local_steps, "--local-steps")
        _need(0 < self.gamma <= 1, f"--gamma must be in (0, 1] (got {self.gamma})")
        _need(isinstance(self.delay_compensation, (int, float))
              and math.isfinite(self.delay_compensation) and self.delay_compensation >= 0,
              f"--delay-compensation must be a finite number >= 0 "
              f"(got {self.delay_compensation})")


@dataclass(frozen=True)
class EmulationConfig:
    """Unequal nodes emulated on one machine (docs/allocation.md)."""

    speeds: tuple[float, ...] | None = setting(
        None, "emulated step-time multiplier per worker, e.g. 1,1,2,4 (none: every worker "
              "at this machine's speed)", metavar="S,S,...")
    reference_slowdown: float = setting(
        2.0, "the reference node (multiplier 1) is this many times slower per sample than "
             "this machine's measured compute (1..2, so communication stays visible)")
    interference: str = setting(
        "", "injected slowdowns W@START[-END]:FACTOR,... (times in seconds with 's', else "
            "iterations), e.g. 3@10s-20s:4", metavar="W@START[-END]:F,...")
    calibration: str | None = setting(
        None, "reuse this machine's measured time per sample from a calibration.json that an "
              "earlier run wrote (none: measure it now), so that compared runs emulate the same "
              "cluster", metavar="FILE")
    cpu_hogs: str = setting("", "workers that get a real busy-loop process pinned beside "
                                "them, e.g. 3 or 0,2", metavar="W,...")

    def __post_init__(self) -> None:
        if isinstance(self.speeds, str):
            object.__setattr__(self, "speeds", parse_speeds(self.speeds))
        if self.speeds is not None:
            object.__setattr__(self, "speeds", tuple(float(v) for v in self.speeds))
            _need(all(math.isfinite(v) and v > 0 for v in self.speeds),
                  f"--speeds must all be finite and > 0 (got {self.speeds})")
        _need(1.0 <= self.reference_slowdown <= 2.0,
              f"--reference-slowdown must be in [1, 2] (got {self.reference_slowdown})")
        # parsed once; not a field, so equality and repr see only the text
        object.__setattr__(self, "_windows", parse_interference(self.interference))
        _need(all(h.strip().isdigit() for h in self.cpu_hogs.split(",") if h.strip()),
              f"--cpu-hogs must list worker ids, e.g. 3 or 0,2 (got {self.cpu_hogs!r})")

    @property
    def windows(self) -> tuple[Interference, ...]:
        """--interference, parsed once when the config was made."""
        return self._windows

    @property
    def hogged(self) -> set[int]:
        """The worker ids of --cpu-hogs."""
        return {int(h) for h in self.cpu_hogs.split(",") if h.strip()}


@dataclass(frozen=True)
class FaultsConfig:
    """Checkpoints, restarts and fault injection (docs/reliability.md)."""

    checkpoint_every: int = setting(500, "write a checkpoint to --out every N iterations "
                                         "(0: never)")
    resume: str | None = setting(None, "continue the run saved in this folder from its last "
                                       "checkpoint (same settings)", metavar="DIR")
    max_restarts: int = setting(0, "restart a worker whose process dies up to this many "
                                   "times (0: the survivors go on without it)")
    kill_worker: str = setting("", "fault injection: kill worker W's process once its clock "
                                   "reaches I, W@I[,...]", metavar="W@I,...")
    kill_server: str = setting("", "fault injection: kill the parameter server's process "
                                   "(with shards, the last shard's) once the run has done I "
                                   "iterations, @I", metavar="@I")

    def __post_init__(self) -> None:
        _positive_int(self.checkpoint_every, "--checkpoint-every", least=0)
        _positive_int(self.max_restarts, "--max-restarts", least=0)
        try:
            self.worker_kills  # noqa: B018
        except ValueError:
            raise ConfigError(f"--kill-worker must be W@ITERATION[,...] (got "
                              f"{self.kill_worker!r})") from None
        _need(self.kill_server == "" or self.server_kill is not None,
              f"--kill-server must be @ITERATION (got {self.kill_server!r})")

    @property
    def worker_kills(self) -> dict[int, int]:
        """Worker -> the clock at which to kill it."""
        return {int(w): int(i) for w, i in
                (part.split("@") for part in self.kill_worker.split(",") if part.strip())}

    @property
    def server_kill(self) -> int | None:
        """The iteration of --kill-server's @I; None when the flag is empty (a malformed one is
        refused when the config is made)."""
        at = self.kill_server.strip()
        return int(at[1:]) if at.startswith("@") and at[1:].isdigit() else None


@dataclass(frozen=True)
class OutputConfig:
    """What the run writes and reports."""

    out: str | None = setting(None, "output folder for metrics.jsonl, summary.json, "
                                     "timeline.json, model.pt and checkpoints (none: nothing "
                                     "is written)", metavar="DIR")
    overwrite: bool = setting(False, "replace the outputs of an earlier run in --out")
    eval_every: int = setting(100, "evaluate a weight snapshot every N applied gradients")
    defer_eval: bool = setting(
        False, "evaluate the snapshots after the run, not during it: no live accuracy, no CPU "
               "taken from training; each snapshot keeps its own time (checkpoints hold the "
               "snapshots not yet evaluated)")
    target_accuracy: float = setting(0.97, "validation accuracy whose first crossing is "
                                           "reported as time_to_target_s")
    progress: bool = setting(True, "no progress line", flag="--quiet")
    tensorboard: str | None = setting(
        None, "also write the run's scalars (loss, accuracy, throughput, staleness, each "
              "worker's batch share and samples/s) as TensorBoard events into this folder, "
              "while it runs (needs the tensorboard extra)", metavar="DIR")

    def __post_init__(self) -> None:
        _positive_int(self.eval_every, "--eval-every")
        _need(0 < self.target_accuracy <= 1,
              f"--target-accuracy must be in (0, 1] (got {self.target_accuracy})")

    @property
    def out_dir(self) -> Path | None:
        """--out as a Path; None when the run writes nothing."""
        return Path(self.out) if self.out else None


@dataclass(frozen=True)
class ClusterConfig:
    """Where the processes run."""

    address: str | None = setting(None, "join this Ray cluster ('auto' or host:port) instead "
                                         "of starting a local instance", metavar="ADDRESS")
    timeout_s: float = setting(300.0, "seconds any single wait may take before the run stops "
                                      "with an error naming who is late", flag="--timeout")
    transport: str = setting(
        "gloo", "data plane for pushes and replies: gloo (torch.distributed point to point "
        "between the actors, Ray for control; on one node the frames stay in shared memory "
        "and semaphores ring a doorbell), gloo-tcp (whole frames over gloo even on one node) "
        "or ray (Ray actor calls)", values=TRANSPORTS)
    server_shards: int = setting(
        1, "parameter-server shards: the flat parameters split into K ranges balanced by size, "
           "one process each, pushed to and pulled from in parallel (not with --transport ray)",
        metavar="K")
    device: str = setting(
        "auto", "where workers compute: cpu; cuda (every worker on a GPU Ray gives it, an "
                "error at start where there is none); auto (cuda on the workers Ray gave a GPU "
                "with --worker-gpus, the CPU on the others)", values=DEVICES)
    worker_gpus: tuple[float, ...] | None = setting(
        None, "GPUs each worker asks Ray for: one value for all or one per worker, a fraction "
              "to share a GPU, e.g. 0,0,1,1 for two CPU and two GPU workers (none: 1 each with "
              "--device cuda, else 0)", metavar="G[,G,...]")

    def __post_init__(self) -> None:
        _need(self.timeout_s > 0, f"--timeout must be > 0 seconds (got {self.timeout_s})")
        _need(self.transport in TRANSPORTS,
              f"--transport must be one of {', '.join(TRANSPORTS)} (got {self.transport!r})")
        _positive_int(self.server_shards, "--server-shards")
        _need(self.server_shards == 1 or self.transport != "ray",
              f"--server-shards {self.server_shards} needs a gloo transport (a Ray call "
              "reaches one shard)")
        _need(self.device in DEVICES,
              f"--device must be one of {', '.join(DEVICES)} (got {self.device!r})")
        object.__setattr__(self, "worker_gpus", parse_gpus(self.worker_gpus))


SECTIONS = {"training": TrainingConfig, "data": DataConfig, "consistency": ConsistencyConfig,
            "allocation": AllocationConfig, "update": UpdateConfig,
            "emulation": EmulationConfig, "faults": FaultsConfig, "output": OutputConfig,
            "cluster": ClusterConfig}


def flat_name(f: Field) -> str:
    """A field's keyword in `TrainConfig.from_flat` and `hetsync.train`: its `setting`'s `flat`
    if given, else its name. Its flag is this with dashes, unless `flag` names another."""
    return f.metadata.get("flat") or f.name


def section_fields() -> Iterator[tuple[str, type, Field]]:
    """(section name, section class, field) for every setting, in declaration order."""
    for name, cls in SECTIONS.items():
        for f in fields(cls):
            yield name, cls, f


# flat keyword -> (section, field name); each flat name is one setting's
FLAT = {flat_name(f): (section, f.name) for section, _, f in section_fields()}
assert len(FLAT) == sum(1 for _ in section_fields()), "two settings share a flat name"


def _flat_of(section: str, name: str) -> str:
    return next(flat for flat, where in FLAT.items() if where == (section, name))


def flatten(stored: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The settings a stored config names (config.json, a --config file: sections as in
    `TrainConfig.to_dict`), by flat name; an unknown section or setting is refused, so that
    a misspelt name is not silently ignored."""
    known = {section: {f.name for f in fields(c)} for section, c in SECTIONS.items()}
    for section, values in stored.items():
        if section not in known or not isinstance(values, dict):
            raise ConfigError(f"unknown section [{section}]; the sections are "
                              f"{', '.join(known)}")
        for name in values:
            if name not in known[section]:
                raise ConfigError(f"unknown setting {name!r} in [{section}]")
    flat = {_flat_of(section, name): value for section, values in stored.items()
            for name, value in values.items()}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in flat.items()}  # TOML arrays


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a run, one frozen section per component. `__post_init__` checks what
    spans sections, and under --resume points --out at the resumed folder."""

    training: TrainingConfig = field(default_factory=TrainingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    consistency: ConsistencyConfig = field(default_factory=ConsistencyConfig)
    allocation: AllocationConfig = field(default_factory=AllocationConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)
    emulation: EmulationConfig = field(default_factory=EmulationConfig)
    faults: FaultsConfig = field(default_factory=FaultsConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    @classmethod
    def from_flat(cls, **settings: Any) -> TrainConfig:
        """A config from keywords named like the CLI flags (`workers=2, sync="ssp"`)."""
        nested: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
        for key, value in settings.items():
            if key not in FLAT:
                raise ConfigError(f"unknown setting {key!r}")
            section, name = FLAT[key]
            nested[section][name] = value
        return cls(**{name: SECTIONS[name](**kw) for name, kw in nested.items()})

    def __post_init__(self) -> None:
        workers = self.training.workers
        speeds = self.emulation.speeds
        _need(speeds is None or len(speeds) == workers,
              f"--speeds has {len(speeds or ())} values for {workers} workers")
        bad = [w.worker for w in self.emulation.windows if w.worker >= workers]
        _need(not bad, f"--interference names worker {bad[0] if bad else 0}, but workers are "
                       f"0..{workers - 1}")
        _need(all(h < workers for h in self.emulation.hogged),
              f"--cpu-hogs must list worker ids below {workers} (got "
              f"{self.emulation.cpu_hogs!r})")
        kills = self.faults.worker_kills
        _need(all(0 <= w < workers for w in kills),
              f"--kill-worker names a worker outside 0..{workers - 1}")
        _need(len(kills) < workers or self.faults.max_restarts > 0,
              "--kill-worker would kill every worker (and --max-restarts is 0)")
        out, resume = self.output.out, self.faults.resume
        if resume is not None:
            _need(out in (None, resume), f"--resume {resume} continues that folder; drop "
                                         f"--out {out}")
            _need(not self.output.overwrite, "--resume and --overwrite exclude each other")
            object.__setattr__(self, "output", replace(self.output, out=resume))
        self.gpus  # noqa: B018  (validates --device against --worker-gpus)
        _need(not self.update.delay_compensation or (
            self.update.rule == "sgd" and self.consistency.sync != "bsp"),
            "--delay-compensation corrects stale gradients: it needs --update sgd and --sync "
            "ssp or asp")
        _need(self.faults.server_kill is None or (
            self.output.out and self.faults.checkpoint_every > 0),
            "--kill-server needs --out and --checkpoint-every: a lost server restarts from "
            "the last checkpoint")

    @classmethod
    def from_dict(cls, stored: dict[str, dict[str, Any]], **settings: Any) -> TrainConfig:
        """A config from `to_dict`'s output (config.json in a run folder, a --config file),
        with `settings` (flat names) taking precedence. A name it does not know is refused."""
        return cls.from_flat(**{**flatten(stored), **settings})

    @property
    def gpus(self) -> tuple[float, ...]:
        """The GPUs each worker asks Ray for (hetsync.core.devices)."""
        return gpus_per_worker(self.cluster.device, self.cluster.worker_gpus,
                               self.training.workers)

    def flat(self) -> dict[str, Any]:
        """Every setting by its flat name (objects such as datasets as they are)."""
        return {flat_name(f): getattr(getattr(self, section), f.name)
                for section, _, f in section_fields()}

    def to_toml(self, only: set[str] | None = None) -> str:
        """The settings as TOML that `--config` reads back (a setting that is unset, None,
        is left out: TOML has no null; objects appear by name). `only` keeps these flat
        names (what a benchmark suite takes), and the sections that hold any."""
        lines = []
        for section, values in self.to_dict().items():
            if only is not None:
                values = {name: v for name, v in values.items()
                          if _flat_of(section, name) in only}
                if not values:
                    continue
            lines.append(f"[{section}]")
            for name, value in values.items():
                if value is None:
                    lines.append(f"# {name} is unset")
                elif isinstance(value, bool):
                    lines.append(f"{name} = {str(value).lower()}")
                else:
                    lines.append(f"{name} = {json.dumps(value)}")
            lines.append("")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """JSON-friendly, by section, for summary.json and checkpoints: objects (model
        factories, datasets) by name."""
        out: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
        for section, _, f in section_fields():
            v = getattr(getattr(self, section), f.name)
            if v is not None and not isinstance(v, (str, int, float, bool, tuple)):
                v = getattr(v, "__name__", type(v).__name__)
            out[section][f.name] = list(v) if isinstance(v, tuple) else v
        return out

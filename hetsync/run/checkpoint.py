"""The run folder, and saving and loading weights and run checkpoints. Files are written atomically (temporary
file, fsync, rename) and read with `torch.load(..., weights_only=True)`, so a crash never
leaves half a file and a checkpoint can never execute code.

A run checkpoint holds what a resumed run needs to continue where the saved one was: the
server's state (global weights, optimizer state, version, clocks, staleness counters), the
allocator's (the epoch's remaining data, measured rates, its RNG state) and the driver's
(elapsed time, best accuracy, how many metrics records belong to the saved state, and with
`--defer-eval` the weight snapshots not yet evaluated, so that a checkpoint never makes the
driver evaluate during training and a resumed run still evaluates every snapshot: their
tensors are files of their own in the folder's snapshots/, each written once, which the
checkpoint names).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hetsync.config import FLAT, TrainConfig
from hetsync.core.wire import Snapshot
from hetsync.errors import ConfigError, DivergedError, HetsyncError
from hetsync.run.metrics import write_atomic, write_json_atomic

CHECKPOINT_FILE = "checkpoint.pt"
CONFIG_FILE = "config.json"
# What a run writes into --out (and the temporary files of an atomic write): a folder holding
# anything else is not a run's, and a run does not write into it.
RUN_NAMES = ("metrics.jsonl", "summary.json", "timeline.json", "model.pt", CHECKPOINT_FILE,
             CONFIG_FILE, "calibration.json")
RUN_FILES = {*RUN_NAMES, *(f"{name}.tmp" for name in RUN_NAMES)}
# --defer-eval: the snapshots a checkpoint names, one file each, named by their iterations
# (a run touches nothing else in the folder, and only plain files of such names)
SNAPSHOT_DIR = "snapshots"
SNAPSHOT_NAME = re.compile(r"^\d{12}\.pt(\.tmp)?$")
# 2: the SGD rule saves where the learning-rate schedule stands; 3: buffers, the consistency
# controller's own state; 4: the SGD rule's momentum buffer as a plain tensor; 5: unevaluated
# snapshots in files of their own (4's held them inline, and still load)
FORMAT = 5
READS = (4, 5)
# The settings that define what is trained: a checkpoint continues only a run that had the
# same ones. Everything else (timeouts, emulated speeds, fault injection, where the data
# lives) may change between the saved run and the resumed one.
IDENTITY = ("model", "dataset", "val_dataset", "workers", "sync", "staleness", "batch_size",
            "lr", "lr_schedule", "momentum", "iterations", "update", "local_steps", "gamma", "allocation",
            "seed", "synthetic_samples", "val_fraction", "image_size", "image_mode")


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save `obj` to `path`, as `write_atomic` writes."""
    write_atomic(path, lambda f: torch.save(obj, f), binary=True)


def load_weights(path: str | os.PathLike) -> dict:
    """A file of tensors and plain values, loaded on the CPU with `weights_only=True`;
    `HetsyncError` if it is missing, corrupt or holds anything else."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise HetsyncError(f"checkpoint {path} does not exist") from e
    except Exception as e:  # torch raises several types for corrupt or unsafe files
        raise HetsyncError(f"checkpoint {path} is corrupt or not a weights file: "
                           f"{_load_failure(e)}") from e


def _load_failure(e: Exception) -> str:
    """What is wrong with the file, from torch's error: for a refused unpickling, the
    unpickler's own reason (torch wraps it in advice to load the file with
    weights_only=False, which would run its code: not ours to pass on)."""
    text = str(e)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and "weights_only" not in line]
    return lines[0].split(". ")[0] if lines else type(e).__name__


def identity(cfg) -> dict[str, Any]:
    """`cfg`'s IDENTITY settings by flat name: what the saved run and the resuming one must
    share."""
    d = cfg.to_dict()
    return {k: d[FLAT[k][0]][FLAT[k][1]] for k in IDENTITY}


@dataclass
class Checkpoint:
    """What a resumed run needs, saved as a plain dict of these fields (`load_checkpoint`
    rebuilds it and refuses one from other settings)."""

    identity: dict[str, Any]
    num_params: int
    server: dict  # ParameterServer.state_dict(), weights and buffers included
    allocator: dict  # Allocator.state_dict()
    elapsed_s: float  # training time up to the save, so wall times continue on resume
    metrics_lines: int  # records of metrics.jsonl that describe the saved state
    best_val_accuracy: float | None
    time_to_target_s: float | None
    format: int = FORMAT
    # --defer-eval: the snapshots not yet evaluated (`keep_snapshots`); absent before 2026-12
    unevaluated: list[dict] = field(default_factory=list)

    @property
    def iterations(self) -> int:
        """Gradients applied when it was saved: where the resumed run goes on from."""
        return self.server["applied"]

    @classmethod
    def of_run(cls, cfg, state: dict, elapsed_s: float, metrics_lines: int,
               best: float | None, time_to_target: float | None,
               unevaluated: list[dict] | None = None) -> Checkpoint:
        """A checkpoint of a run from the server actor's state (`{"server", "allocator"}`);
        weights that became non-finite stop the run instead, keeping the last good one."""
        server = state["server"]
        if not bool(server["weights"].isfinite().all()):
            raise DivergedError(f"the global weights became non-finite by iteration "
                                f"{server['applied']}; lower --lr (the last good checkpoint "
                                f"stays in {cfg.output.out_dir})")
        return cls(identity=identity(cfg), num_params=server["weights"].numel(), server=server,
                   allocator=state["allocator"], elapsed_s=elapsed_s,
                   metrics_lines=metrics_lines, best_val_accuracy=best,
                   time_to_target_s=time_to_target, unevaluated=unevaluated or [])

    def save(self, out_dir: Path) -> None:
        """Write checkpoint.pt into `out_dir` atomically, replacing the previous one."""
        save_atomic(asdict(self), out_dir / CHECKPOINT_FILE)


def keep_snapshots(snapshots: list[Snapshot], t0: float, out_dir: Path) -> list[dict]:
    """Snapshots as a checkpoint names them: each one's tensors in a file of its own in
    `out_dir`/snapshots, written once (a later checkpoint that still holds it names the same
    file: inside the checkpoint, the k-th would write k of them again, 45 MB each for
    ResNet-18), and its time as seconds since the run's start `t0`, which a resumed run
    moves. The files are on disk before the checkpoint that names them (`save_atomic`). A
    file of the name already there is this run's: a fresh run starts with none, a resumed one
    with only those its checkpoint names (`forget_snapshots`)."""
    folder = out_dir / SNAPSHOT_DIR
    kept = []
    for s in snapshots:
        name = f"{s.iterations:012d}.pt"
        if not (folder / name).exists():
            folder.mkdir(exist_ok=True)
            save_atomic({"weights": torch.from_numpy(np.array(s.weights)),
                         "buffers": None if s.buffers is None
                         else torch.from_numpy(np.array(s.buffers))}, folder / name)
        kept.append({"file": name, "iterations": s.iterations, "samples": s.samples,
                     "version": s.version, "elapsed_s": s.time - t0})
    return kept


def _snapshot_files(out_dir: Path) -> list[Path]:
    """The snapshot files in `out_dir`/snapshots (plain files of snapshot names only; none
    through a link)."""
    folder = out_dir / SNAPSHOT_DIR
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return []
        return [Path(e.path) for e in os.scandir(folder) if SNAPSHOT_NAME.match(e.name)
                and e.is_file(follow_symlinks=False)]
    except OSError:
        return []


def forget_snapshots(out_dir: Path, kept: list[dict]) -> None:
    """Remove the snapshot files that `kept` (the checkpoint's) does not name: evaluated
    since, or written for a checkpoint that never completed (a resumed run takes those
    again, from its own weights); the folder too once it is empty. Best effort: a file that
    cannot go stays, and the run goes on."""
    names = {k.get("file") for k in kept}
    for path in _snapshot_files(out_dir):
        if path.name not in names:
            with contextlib.suppress(OSError):
                path.unlink()
    with contextlib.suppress(OSError):
        (out_dir / SNAPSHOT_DIR).rmdir()  # only if empty


def restore_snapshots(kept: list[dict], t0: float, out_dir: Path) -> list[Snapshot]:
    """`keep_snapshots`' inverse, for a run whose start is now `t0` (a format-4 checkpoint holds
    the tensors itself). A file that is missing or does not load costs only its point of the
    accuracy curve: a warning, and the run resumes without it."""
    out = []
    for k in kept:
        try:
            tensors = k if "weights" in k else load_weights(out_dir / SNAPSHOT_DIR / k["file"])
        except HetsyncError as e:
            warnings.warn(f"the snapshot at iteration {k['iterations']} is left unevaluated: {e}",
                          stacklevel=2)
            continue
        out.append(Snapshot(tensors["weights"].numpy(), None if tensors["buffers"] is None
                            else tensors["buffers"].numpy(), k["iterations"], k["samples"],
                            k["version"], t0 + k["elapsed_s"]))
    return out


class CheckpointSchedule:
    """A checkpoint every `every` iterations (0: never), counted from where a resumed run
    starts."""

    def __init__(self, every: int, start: int = 0):
        self.every = every
        self.next = (start // every + 1) * every if every else None

    def due(self, iterations: int) -> bool:
        """Whether a checkpoint is due at `iterations` (never when `every` is 0)."""
        return self.next is not None and iterations >= self.next

    def saved(self, iterations: int) -> None:
        """A checkpoint was saved at `iterations`: the next is due at the next multiple of
        `every`."""
        self.next = (iterations // self.every + 1) * self.every


def _is_snapshot_dir(path: Path) -> bool:
    """Whether `path` is a run's snapshots folder: a folder (not a link) of that name holding
    snapshot files only. Anything else of the name is the user's, and refused as foreign."""
    try:
        return (path.name == SNAPSHOT_DIR and stat.S_ISDIR(os.lstat(path).st_mode)
                and all(SNAPSHOT_NAME.match(e.name) for e in os.scandir(path)))
    except OSError:
        return False


def prepare_out(cfg, num_params: int, loaded: dict | None = None) -> Checkpoint | None:
    """Settle the output folder before any work: the checkpoint to resume from, a fresh start,
    or a refusal that leaves another run's files untouched. `loaded`: the checkpoint file's
    contents where the caller has read them already."""
    out = cfg.output.out_dir
    if out is None:
        return None
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder; choose a folder for the run")
    if cfg.faults.resume is not None:
        check_resumable(out)
        ckpt = load_checkpoint(out, cfg, num_params, loaded)
        forget_snapshots(out, ckpt.unevaluated)
        return ckpt
    board = Path(cfg.output.tensorboard) if cfg.output.tensorboard else None
    # the run's TensorBoard folder may be inside --out (its events are the run's too)
    ours = {board.name} if board and board.resolve().parent == out.resolve() else set()
    foreign = sorted(p.name for p in out.iterdir() if p.name not in RUN_FILES | ours
                     and not p.name.startswith(".") and not _is_snapshot_dir(p)
                     ) if out.exists() else []
    if foreign:
        raise ConfigError(f"--out {out} holds files that are not a run's ({', '.join(foreign[:3])}"
                          f"{', ...' if len(foreign) > 3 else ''}); choose a new or empty folder")
    files = [out / name for name in ("summary.json", "metrics.jsonl", CHECKPOINT_FILE)]
    if any(f.exists() for f in files):
        if not cfg.output.overwrite:
            raise ConfigError(f"--out {out} holds another run; pass --resume {out} to continue "
                              "it, --overwrite to replace it, or choose another folder")
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
    forget_snapshots(out, [])  # a fresh run's snapshots are its own
    out.mkdir(parents=True, exist_ok=True)
    stored = cfg.to_dict()  # what `--resume DIR` alone reads, from wherever it is typed
    for section, name in (("data", "data_dir"), ("emulation", "calibration"),
                          ("output", "tensorboard")):
        if stored[section][name]:
            stored[section][name] = str(Path(stored[section][name]).resolve())
    write_json_atomic(out / CONFIG_FILE, stored)
    return None


def stored_config(out_dir: Path) -> dict | None:
    """The config a run saved in its folder, or None (an older run, or not a run's folder)."""
    try:
        return json.loads((out_dir / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def saved_iterations(out_dir: Path) -> int | None:
    """Where the checkpoint in `out_dir` stands, or None if it has none that loads."""
    try:
        return load_weights(out_dir / CHECKPOINT_FILE)["server"]["applied"]
    except (HetsyncError, KeyError, TypeError):
        return None


def check_resumable(out_dir: Path) -> None:
    """Refuse `--resume out_dir` in one line when that run has finished or left no checkpoint:
    called before the data is loaded too, so that a missing run is the error reported."""
    if (out_dir / "summary.json").exists():
        raise ConfigError(f"the run in {out_dir} has finished; there is nothing to resume")
    if not (out_dir / CHECKPOINT_FILE).exists():
        raise ConfigError(f"--resume {out_dir}: there is no {CHECKPOINT_FILE} to resume from "
                          "(checkpoints need --out and --checkpoint-every)")


def load_checkpoint(out_dir: Path, cfg, num_params: int, loaded: dict | None = None) -> Checkpoint:
    """The checkpoint in `out_dir`, refused with a one-line error when it is corrupt or from a
    run with other settings or another model (`check_resumable` refuses a missing one)."""
    path = out_dir / CHECKPOINT_FILE  # there is one: `check_resumable` ran before
    raw = load_weights(path) if loaded is None else loaded
    try:
        ckpt = Checkpoint(**raw)
        ckpt.iterations  # noqa: B018  (a checkpoint without server state is corrupt)
    except (TypeError, KeyError):
        raise ConfigError(f"{path} is not a hetsync checkpoint") from None
    if ckpt.format not in READS:
        raise ConfigError(f"{path} has format {ckpt.format}; this hetsync reads "
                          f"{' and '.join(map(str, READS))}")
    ours = identity(cfg)
    # a setting newer than the checkpoint had its default value in the saved run
    theirs = {**identity(TrainConfig()), **ckpt.identity}
    differ = [f"{k} {theirs[k]!r} there, {ours[k]!r} here" for k in IDENTITY
              if theirs[k] != ours[k]]
    if differ:
        raise ConfigError(f"the checkpoint in {out_dir} is from a run with other settings: "
                          + "; ".join(differ))
    if ckpt.num_params != num_params:
        raise ConfigError(f"the checkpoint in {out_dir} holds {ckpt.num_params} parameters; "
                          f"this model has {num_params}")
    return ckpt

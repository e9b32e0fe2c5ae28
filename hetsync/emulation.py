"""Emulated heterogeneity: per-worker speed multipliers and interference windows, so that one
machine can stand in for a cluster of unequal nodes.

A step of b samples on worker i takes `b * reference_s_per_sample * speeds[i] * slowdown(t)`
seconds: the worker computes for real and sleeps the rest, so a slow node costs wall time,
not CPU. The reference node is calibrated against this machine's real single-thread compute
(at most 2x slower per sample), so communication costs stay visible.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hetsync.errors import ConfigError

_WINDOW = re.compile(r"^(\d+)@(\d+(?:\.\d+)?)(s?)(?:-(\d+(?:\.\d+)?)(s?))?:(\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class Interference:
    """From `start` until `end` (None: the end of the run) worker `worker` is `factor` times
    slower. Times are seconds since training started when `unit` is "s", else the worker's
    iteration count."""

    worker: int
    start: float
    end: float | None
    factor: float
    unit: str  # "s" or "it"

    def active(self, elapsed_s: float, iteration: int) -> bool:
        """Whether the window covers now: `elapsed_s` counts for a window in seconds, `iteration`
        for one in iterations; `end` is excluded."""
        now = elapsed_s if self.unit == "s" else iteration
        return now >= self.start and (self.end is None or now < self.end)


def parse_speeds(text: str | None) -> tuple[float, ...] | None:
    """--speeds, e.g. `1,1,2,4`, as floats; None for an empty text. The config checks the values
    (`EmulationConfig`)."""
    if not text:
        return None
    try:
        speeds = tuple(float(s) for s in text.split(","))
    except ValueError:
        raise ConfigError(f"--speeds must be comma-separated numbers (got {text!r})") from None
    return speeds


def parse_interference(text: str | None) -> tuple[Interference, ...]:
    """`W@START[-END]:F[,...]`, e.g. `3@10s-20s:4` (worker 3 is 4x slower from second 10 to
    20) or `1@500:2` (worker 1 is 2x slower from its iteration 500 on)."""
    if not text:
        return ()
    out = []
    for part in text.split(","):
        m = _WINDOW.match(part.strip())
        if not m:
            raise ConfigError(f"--interference entry {part!r} is not W@START[-END]:FACTOR "
                              "(times in seconds with 's', else iterations)")
        worker, start, unit1, end, unit2, factor = m.groups()
        if end is not None and unit1 != unit2:
            raise ConfigError(f"--interference entry {part!r} mixes seconds and iterations")
        if end is not None and float(end) <= float(start):
            raise ConfigError(f"--interference entry {part!r} ends before it starts")
        if float(factor) <= 0:
            raise ConfigError(f"--interference entry {part!r} needs a factor > 0")
        out.append(Interference(int(worker), float(start), None if end is None else float(end),
                                float(factor), "s" if unit1 else "it"))
    return tuple(out)


class StepPacer:
    """Stretches one worker's steps to its emulated duration by sleeping."""

    def __init__(self, worker: int, speed: float, reference_s_per_sample: float,
                 interference: tuple[Interference, ...] = ()):
        self.speed = speed
        self.ref = reference_s_per_sample
        self.windows = [w for w in interference if w.worker == worker]
        self.start: float | None = None

    def slowdown(self, iteration: int) -> float:
        """The product of the factors of this worker's windows active now (1.0 outside them);
        seconds count from its first paced step."""
        elapsed = 0.0 if self.start is None else time.time() - self.start
        factor = 1.0
        for w in self.windows:
            if w.active(elapsed, iteration):
                factor *= w.factor
        return factor

    def pace(self, began: float, samples: int, iteration: int) -> None:
        """Sleep until the step that began at `began` (time.time()) has lasted its emulated
        duration; a step already longer is not cut. The first call starts the windows' clock."""
        if self.start is None:
            self.start = began
        target = samples * self.ref * self.speed * self.slowdown(iteration)
        remaining = began + target - time.time()
        if remaining > 0:
            time.sleep(remaining)


def calibrate_s_per_sample(model: torch.nn.Module, sample: np.ndarray, batch_size: int,
                           steps: int = 20) -> float:
    """Real single-thread forward+backward time per sample on this machine, measured on a copy
    of `model` (training-mode passes move batch norm's running statistics)."""
    model = copy.deepcopy(model)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x = torch.from_numpy(np.ascontiguousarray(sample[:batch_size]))
        y = torch.zeros(len(x), dtype=torch.int64)
        for _ in range(3):
            F.cross_entropy(model(x), y).backward()
        t0 = time.perf_counter()
        for _ in range(steps):
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
        model.zero_grad(set_to_none=True)
        return (time.perf_counter() - t0) / (steps * len(x))
    finally:
        torch.set_num_threads(threads)


@dataclass
class EmulatedCluster:
    """Per-worker speed multipliers on a reference node calibrated against this machine."""

    speeds: tuple[float, ...] | None
    reference_s_per_sample: float | None
    windows: tuple
    real_s_per_sample: float | None = None  # what the calibration measured on this machine

    def pacer(self, worker: int) -> StepPacer | None:
        """`worker`'s pacer, or None when nothing is emulated: it then computes at this machine's
        speed."""
        if self.speeds is None and not self.windows:
            return None
        speed = self.speeds[worker] if self.speeds else 1.0
        return StepPacer(worker, speed, self.reference_s_per_sample, self.windows)

    def ideal_samples_per_s(self, elapsed_s: float | None = None) -> float | None:
        """Sum of each worker's isolated rate: the physical limit of this cluster, at a moment
        (time-based interference included) or without interference (elapsed_s None)."""
        if self.reference_s_per_sample is None:
            return None
        total = 0.0
        for i, speed in enumerate(self.speeds):
            factor = 1.0
            for w in self.windows:
                if w.worker == i and w.unit == "s" and elapsed_s is not None and \
                        w.active(elapsed_s, 0):
                    factor *= w.factor
            total += 1.0 / (self.reference_s_per_sample * speed * factor)
        return total

    def mean_ideal_samples_per_s(self, wall_s: float, steps: int = 1000) -> float | None:
        """`ideal_samples_per_s` averaged over a run of `wall_s` seconds (at `steps` midpoints),
        so that interference in seconds counts for its share; None without emulation."""
        if self.reference_s_per_sample is None:
            return None
        return sum(self.ideal_samples_per_s(wall_s * (k + 0.5) / steps)
                   for k in range(steps)) / steps


def _measured_on(cfg) -> dict:
    """What a calibration is a measurement of: the model, the data (one model takes MNIST's
    28x28 and CIFAR-10's 32x32x3 at different costs) and the batch it ran."""
    name = lambda v: v if isinstance(v, str) else getattr(v, "__name__", type(v).__name__)  # noqa: E731
    return {"model": name(cfg.training.model), "dataset": name(cfg.data.dataset),
            "batch_size": cfg.training.batch_size}


def read_calibration(path: str | os.PathLike, cfg) -> float:
    """This machine's measured seconds per sample, from a calibration.json a run wrote for
    the same model, dataset and batch size."""
    try:
        stored = json.loads(Path(path).read_text())
        value = stored["real_s_per_sample"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"--calibration {path} is not a calibration file a run wrote "
                          f"({type(e).__name__})") from None
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ConfigError(f"--calibration {path} holds no positive time per sample")
    ours = _measured_on(cfg)
    theirs = {k: stored.get(k, ours[k]) for k in ours}
    if theirs != ours:
        raise ConfigError(f"--calibration {path} was measured with {theirs}; this run has "
                          f"{ours}")
    return float(value)


def write_calibration(path: str | os.PathLike, real_s_per_sample: float, cfg) -> None:
    """calibration.json: this machine's seconds per sample, and the model, dataset and batch they
    were measured with, which `read_calibration` checks."""
    Path(path).write_text(json.dumps({"real_s_per_sample": real_s_per_sample,
                                      **_measured_on(cfg)}) + "\n")


def emulated_cluster(cfg, model: torch.nn.Module, data) -> EmulatedCluster:
    """The cluster a `TrainConfig` describes. The reference node is calibrated against this
    machine, or read from `--calibration` so that compared runs emulate the same cluster."""
    em, batch, workers = cfg.emulation, cfg.training.batch_size, cfg.training.workers
    windows = em.windows
    if em.speeds is None and not windows:
        return EmulatedCluster(None, None, ())
    real = (read_calibration(em.calibration, cfg) if em.calibration
            else calibrate_s_per_sample(model, data.x, batch))
    ref = real * em.reference_slowdown
    speeds = em.speeds or (1.0,) * workers
    if cfg.output.progress:
        print(f"hetsync: emulated speeds {','.join(f'{v:g}' for v in speeds)}; reference node "
              f"{1000 * ref * batch:.2f} ms per batch of {batch} "
              f"({em.reference_slowdown:g}x this machine's measured "
              f"{1000 * real * batch:.2f} ms)", file=sys.stderr)
    cluster = EmulatedCluster(speeds, ref, windows, real)
    demand = sum(real / (ref * v) for v in speeds) * cfg.training.threads_per_worker
    if demand > (os.cpu_count() or 1):
        warnings.warn(f"the emulated workers need {demand:.1f} cores of real compute, more than "
                      "this machine has: measured speeds will fall below the emulated ones",
                      stacklevel=3)
    return cluster


class CpuHog:
    """Real interference: a busy-looping process pinned to the same core as this worker,
    which is pinned too, for as long as the block runs. Unlike the emulated slowdowns, this
    measures what a noisy neighbour does to the actual computation."""

    def __init__(self, worker: int):
        cores = sorted(os.sched_getaffinity(0))
        self.core = cores[worker % len(cores)]
        self.proc = None

    def __enter__(self) -> CpuHog:
        import subprocess

        os.sched_setaffinity(0, {self.core})
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "while True: pass"],
            preexec_fn=lambda: os.sched_setaffinity(0, {self.core}))
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()

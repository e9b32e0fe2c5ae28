"""TensorBoard scalars of a run, written while it goes (`--tensorboard DIR`).

The driver holds one `RunScalars` and calls it where the figures already are: at its polls of
the server's status (loss, throughput, staleness, version lag, each worker's samples/s), at
every evaluation, at every rebalancing of the allocator (each worker's batch share and the
speed IDPA measured), and with the summary (the wait fraction, known once the workers have
reported). Without the flag its writer is a `NullWriter`: the same calls, nothing written,
and no `if enabled:` in the driver. Steps are global iterations (the budget spent) and wall
times the run's own clock, so TensorBoard's "relative" axis reads seconds since the start.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

from hetsync.core.wire import Status
from hetsync.errors import ConfigError

INSTALL = "pip install 'hetsync[tensorboard]'"
FLUSH_S = 5  # SummaryWriter's default is 120 s: too late to watch a run of a few minutes
EVENTS = "events.out.tfevents.*"


class ScalarWriter(Protocol):
    """What `RunScalars` writes through: the part of `SummaryWriter` it uses."""

    def add_scalar(self, tag: str, scalar_value: float, global_step: int | None = None,
                   walltime: float | None = None) -> None:
        """One value of `tag` at step `global_step`; `walltime` in seconds since the epoch (None:
        now)."""

    def flush(self) -> None:
        """Write what is buffered to the events file."""

    def close(self) -> None:
        """Flush and close the events file."""


class NullWriter:
    """The writer of a run without --tensorboard: takes every scalar and writes none, so that
    the driver calls the same code either way."""

    def add_scalar(self, tag: str, scalar_value: float, global_step: int | None = None,
                   walltime: float | None = None) -> None:
        """Take the scalar and drop it."""

    def flush(self) -> None:
        """Nothing to flush."""

    def close(self) -> None:
        """Nothing to close."""


def _summary_writer_class():
    """torch's SummaryWriter, or the one-line error that names the extra to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises it when the tensorboard package is missing
        raise ConfigError(f"--tensorboard needs the tensorboard package: {INSTALL}") from None
    return SummaryWriter


def check_tensorboard(log_dir: str | None, overwrite: bool, resuming: bool) -> None:
    """Refuse, before any work, what would fail or mislead later: the package missing, or a
    folder that holds another run's events (TensorBoard would draw both as one zig-zag line)
    unless `overwrite` replaces them or the run continues its own (`resuming`)."""
    if not log_dir:
        return
    _summary_writer_class()
    folder = Path(log_dir)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--tensorboard {log_dir} is a file, not a folder")
    if not resuming and folder.is_dir() and any(folder.glob(EVENTS)):
        if not overwrite:
            raise ConfigError(f"--tensorboard {log_dir} holds the events of another run; "
                              "choose another folder, or pass --overwrite to replace them")
        for events in folder.glob(EVENTS):
            events.unlink()


class _OnFirstScalar:
    """A SummaryWriter made at the first scalar: a run that fails while starting leaves no
    events file behind, so trying again needs no --overwrite."""

    def __init__(self, log_dir: str, purge_step: int | None):
        self.log_dir, self.purge_step = log_dir, purge_step
        self.writer = None

    def add_scalar(self, tag: str, scalar_value: float, global_step: int | None = None,
                   walltime: float | None = None) -> None:
        if self.writer is None:
            try:
                self.writer = _summary_writer_class()(self.log_dir, purge_step=self.purge_step,
                                                      flush_secs=FLUSH_S)
            except OSError as e:
                raise ConfigError(f"cannot write --tensorboard {self.log_dir}: "
                                  f"{e.strerror or e}") from e
        self.writer.add_scalar(tag, scalar_value, global_step, walltime)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def open_writer(log_dir: str | None, resume_step: int | None = None) -> ScalarWriter:
    """A SummaryWriter on `log_dir` (made at the first scalar), or a NullWriter without one.
    A resumed run passes the checkpoint's iterations: TensorBoard then hides the saved run's
    events from that step on, the stretch the crash lost and this run does again."""
    if not log_dir:
        return NullWriter()
    _summary_writer_class()
    return _OnFirstScalar(log_dir, resume_step)


class RunScalars:
    """The run's figures as scalars, under tags grouped by what they describe:

    - `train/loss` (the server's moving average of the pushed losses), `train/samples_per_s`
      (since the previous write);
    - `eval/val_accuracy`, `eval/val_loss` (at each snapshot's iterations and time);
    - `consistency/staleness_mean`, `consistency/version_lag_mean` (of the updates applied
      since the previous write), `consistency/max_staleness`, `consistency/max_version_lag`
      (the largest so far, as in summary.json);
    - `workers/samples_per_s/wN` (worker N's iterations since the previous write times its
      batch), `workers/batch_share/wN` (its part of the global batch: equal until the
      allocator rebalances), `workers/measured_rate/wN` (the compute speed IDPA measured);
    - at the end, `run/throughput_samples_per_s`, `run/wait_fraction` and
      `workers/wait_fraction/wN`, as in summary.json.

    Status figures are written at most every `every_s` seconds: the driver polls ten times a
    second, which would make rates noisy and event files large."""

    def __init__(self, writer: ScalarWriter, workers: int, batch_size: int,
                 steps_per_clock: int = 1, every_s: float = 1.0):
        """`steps_per_clock`: mini-batches per clock tick (AGWU's local steps, else 1)."""
        self.writer = writer
        self.batches = {w: batch_size for w in range(workers)}
        self.steps_per_clock = steps_per_clock
        self.every_s = every_s
        self.t0 = 0.0  # the run's start, which the records' wall_time_s count from
        self.last: tuple[float, Status] | None = None
        self.last_eval_step = -1

    @classmethod
    def for_run(cls, writer: ScalarWriter, cfg) -> RunScalars:
        """The scalars of the run a `TrainConfig` describes."""
        agwu = cfg.update.rule == "agwu"
        return cls(writer, cfg.training.workers, cfg.training.batch_size,
                   cfg.update.local_steps if agwu else 1)

    def _put(self, tag: str, value: float | None, step: int, walltime: float) -> None:
        if value is not None:
            self.writer.add_scalar(tag, float(value), step, walltime)

    def started(self, iterations: int, t0: float) -> None:
        """The run's clock starts at `t0` (earlier for a resumed run), at `iterations`: the
        batch shares it starts with."""
        self.t0 = t0
        self._shares(iterations, time.time())

    def _shares(self, step: int, now: float) -> None:
        total = sum(self.batches.values())
        for w, batch in sorted(self.batches.items()):
            self._put(f"workers/batch_share/w{w}", batch / total, step, now)

    def status(self, s: Status, now: float | None = None, force: bool = False) -> None:
        """The server's counters at a poll."""
        now = time.time() if now is None else now
        if self.last is not None and not force and now - self.last[0] < self.every_s:
            return
        step = s.iterations
        self._put("train/loss", s.loss, step, now)
        self._put("consistency/max_staleness", s.max_staleness_observed, step, now)
        self._put("consistency/max_version_lag", s.max_version_lag, step, now)
        if self.last is not None and now > self.last[0]:
            then, before = self.last
            dt = now - then
            if s.samples >= before.samples:  # not across a server restart's step back
                self._put("train/samples_per_s", (s.samples - before.samples) / dt, step, now)
            self._put("consistency/staleness_mean",
                      _mean_since(before.staleness_histogram, s.staleness_histogram), step, now)
            self._put("consistency/version_lag_mean",
                      _mean_since(before.version_lag_histogram, s.version_lag_histogram),
                      step, now)
            for w, clock in sorted(s.clocks.items()):
                ticks = clock - before.clocks.get(w, clock)
                if ticks >= 0 and w in self.batches:
                    self._put(f"workers/samples_per_s/w{w}",
                              ticks * self.steps_per_clock * self.batches[w] / dt, step, now)
        self.last = (now, s)

    def record(self, record: dict) -> None:
        """A record of metrics.jsonl: an evaluation, the final one, or a rebalancing."""
        kind, step = record["kind"], record.get("iterations", 0)
        walltime = self.t0 + record.get("wall_time_s", 0.0)
        if kind == "allocation":
            self.batches = {int(w): b for w, b in record["batches"].items()}
            self._shares(step, walltime)
            for w, rate in sorted(record["rates"].items(), key=lambda kv: int(kv[0])):
                self._put(f"workers/measured_rate/w{w}", rate, step, walltime)
        elif kind == "eval" or (kind == "final" and step > self.last_eval_step):
            # (a final evaluation at the last snapshot's step is of the same weights)
            self.last_eval_step = max(self.last_eval_step, step)
            self._put("eval/val_accuracy", record["val_accuracy"], step, walltime)
            self._put("eval/val_loss", record["val_loss"], step, walltime)

    def summary(self, summary: dict) -> None:
        """The figures only the end of the run knows: the wait fraction needs every worker's
        report."""
        step, walltime = summary["iterations"], summary["start_time"] + summary["wall_time_s"]
        self._put("run/throughput_samples_per_s", summary["throughput_samples_per_s"], step,
                  walltime)
        self._put("run/wait_fraction", summary["wait_fraction"], step, walltime)
        for w in summary["per_worker"]:
            if w["total_s"] > 0:
                self._put(f"workers/wait_fraction/w{w['worker']}", w["wait_s"] / w["total_s"],
                          step, walltime)
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the events file (a run that wrote nothing leaves none)."""
        self.writer.close()


def _mean_since(before: dict[str, int], now: dict[str, int]) -> float | None:
    """The mean of the values a histogram gained since `before` (None if it gained none)."""
    gained = {int(k): n - before.get(k, 0) for k, n in now.items()}
    count = sum(n for n in gained.values() if n > 0)
    if count == 0:
        return None
    return sum(k * n for k, n in gained.items() if n > 0) / count

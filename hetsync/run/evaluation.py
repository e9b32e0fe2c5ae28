"""Evaluation of the server's weight snapshots on the validation set, off the training
critical path: on one thread of the driver, in snapshot order, or all after the run
(`--defer-eval`). Each result keeps its snapshot's time, so the accuracy curve and the time
to target are the same measurement either way."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures

import torch
import torch.nn.functional as F
from torch import nn

from hetsync.core.wire import Snapshot, load_into
from hetsync.data import ArrayData
from hetsync.models import build_model


@torch.no_grad()
def evaluate(model: nn.Module, data: ArrayData, batch_size: int = 1000) -> tuple[float, float]:
    """(mean cross-entropy loss, accuracy) of `model` on `data`, in eval mode."""
    was_training = model.training
    model.eval()
    loss, correct = 0.0, 0
    for i in range(0, len(data), batch_size):
        x = torch.tensor(data.x[i:i + batch_size])  # a copy: object-store arrays are read-only
        y = torch.tensor(data.y[i:i + batch_size])
        out = model(x)
        loss += float(F.cross_entropy(out, y, reduction="sum"))
        correct += int((out.argmax(1) == y).sum())
    model.train(was_training)
    return loss / len(data), correct / len(data)


def reached(readings: list[dict] | None, target: float, every: int | None = None) -> dict:
    """`time_to_target_s` and `samples_to_target` of the first reading at or above `target`,
    None where none is. With `every`, only the readings that a run evaluating every `every`
    iterations would have taken count (the first at or past each multiple of `every`, as the
    server and the peers take snapshots): the same run read at a coarser grid. `readings`: a
    run's validated snapshots in order, each with its iterations, wall_time_s, samples and
    val_accuracy."""
    before = 0
    for r in readings or []:
        taken = every is None or r["iterations"] // every > before // every
        before = r["iterations"]
        if taken and r["val_accuracy"] >= target:
            return {"time_to_target_s": r["wall_time_s"], "samples_to_target": r["samples"]}
    return {"time_to_target_s": None, "samples_to_target": None}


class Evaluator:
    """One model to load snapshots into, and the validation data."""

    def __init__(self, model_factory: Callable[[], nn.Module], data: ArrayData):
        self.model = build_model(model_factory, 0)
        self.data = data

    def evaluate(self, snapshot: Snapshot) -> tuple[float, float]:
        """(mean loss, accuracy) of a snapshot on the validation data. It is loaded into the one
        model, so calls must not overlap (the queue's single thread)."""
        load_into(self.model, snapshot.weights, snapshot.buffers)
        return evaluate(self.model, self.data)


class EvaluationQueue:
    """Snapshots in, results out, in order, on one thread with one intra-op thread (evaluation
    in the driver's process: one process fewer to start per run, PyTorch imported already).
    Tracks the best accuracy and when the target was first reached (seconds since `t0`)."""

    def __init__(self, evaluator: Evaluator, target: float, deferred: bool,
                 best: float | None = None, time_to_target: float | None = None):
        self.evaluator, self.target, self.deferred = evaluator, target, deferred
        self.best, self.time_to_target = best, time_to_target
        self.last: float | None = None
        self.held: list[Snapshot] = []
        self.pending: dict[Future, Snapshot] = {}
        self.thread = ThreadPoolExecutor(1, initializer=torch.set_num_threads, initargs=(1,))

    def add(self, snapshots: list[Snapshot]) -> None:
        """Queue snapshots for evaluation: started at once, or held until `results(block=True)`
        when deferred."""
        self.held += snapshots
        if not self.deferred:
            self._submit()

    def _submit(self) -> None:
        for snap in self.held:
            self.pending[self.thread.submit(self.evaluator.evaluate, snap)] = snap
        self.held.clear()

    def results(self, t0: float, block: bool = False) -> list[dict]:
        """Every finished evaluation as a record (every one added so far if `block`)."""
        if block:
            self._submit()
            wait_futures(self.pending, return_when=FIRST_EXCEPTION)
        out = []
        for future in [f for f in self.pending if f.done()]:  # one thread: the first few
            snap = self.pending.pop(future)
            loss, acc = future.result()
            t = snap.time - t0
            out.append(dict(wall_time_s=round(t, 3), iterations=snap.iterations,
                            updates=snap.version, samples=snap.samples, val_loss=loss,
                            val_accuracy=acc))
            self._account(acc, t)
        return out

    def _account(self, acc: float, t: float | None) -> None:
        self.last = acc
        self.best = acc if self.best is None else max(self.best, acc)
        if t is not None and self.time_to_target is None and acc >= self.target:
            self.time_to_target = t

    def use_all_cores(self) -> None:
        """From now on evaluate with every core (once training is over)."""
        self.thread.submit(torch.set_num_threads, os.cpu_count() or 1)

    def final(self, snapshot: Snapshot) -> tuple[float, float]:
        """The final weights' (loss, accuracy), after every snapshot before them."""
        loss, acc = self.thread.submit(self.evaluator.evaluate, snapshot).result()
        self._account(acc, None)
        return loss, acc

    def unevaluated(self) -> list[Snapshot]:
        """The snapshots held, not yet evaluated (`--defer-eval`)."""
        return list(self.held)

    def forget(self, after: int) -> None:
        """Drop what is queued of a timeline lost with a server: the snapshots taken after
        `after` iterations (its checkpoint's); those before go on (with `--defer-eval` they
        are held, unevaluated, as the checkpoint holds them)."""
        self.held = [s for s in self.held if s.iterations <= after]
        self.pending = {f: s for f, s in self.pending.items() if s.iterations <= after}

    def close(self) -> None:
        """Stop the thread: queued evaluations are cancelled, one already running finishes first."""
        self.thread.shutdown(cancel_futures=True)

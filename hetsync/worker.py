"""A worker: one model replica, its data shard, and the loop that trains it against a server.

The loop is written against a small client interface (`push` returns a handle, `get` resolves
it), so that tests run it against an in-process server and the Ray layer against an actor.

Under SSP the worker keeps one push in flight: it computes the next gradient on weights that
may miss its own latest update (allowed: they are at most S clocks old) while the previous
push and the fresh weights travel. Under BSP the gate's bound of 0 makes it wait for each
barrier, so nothing overlaps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hetsync.consistency import StalenessGate
from hetsync.data import ArrayData
from hetsync.models import build_model
from hetsync.server import Reply
from hetsync.wire import FlatModel


class ServerClient(Protocol):
    def join(self, worker: int) -> Reply: ...
    def push(self, worker: int, clock: int, version: int, grad: np.ndarray, batch: int,
             loss: float) -> Any: ...
    def wait_until_allowed(self, worker: int, clock: int) -> Any: ...
    def get(self, handle: Any) -> Reply: ...
    def leave(self, worker: int) -> None: ...


@dataclass
class WorkerReport:
    """What a worker hands back at the end (workers never write files)."""

    worker: int
    iterations: int = 0
    samples: int = 0
    compute_s: float = 0.0
    comm_s: float = 0.0
    wait_s: float = 0.0
    total_s: float = 0.0
    # (kind, start, end) in seconds since the epoch: kind is compute, comm or wait.
    timeline: list[tuple[str, float, float]] = field(default_factory=list)


class ShardSampler:
    """Epochs over this worker's indices, reshuffled each epoch with a per-worker seed."""

    def __init__(self, indices: np.ndarray, seed: int):
        self.indices = np.asarray(indices, dtype=np.int64)
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(self.indices)
        self.pos = 0
        self.epoch = 0

    def next_batch(self, size: int) -> np.ndarray:
        out = []
        while size > 0:
            if self.pos >= len(self.order):
                self.order = self.rng.permutation(self.indices)
                self.pos = 0
                self.epoch += 1
            take = self.order[self.pos:self.pos + size]
            self.pos += len(take)
            size -= len(take)
            out.append(take)
        return np.concatenate(out)


class Worker:
    def __init__(self, worker_id: int, model_factory: Callable[[], nn.Module], data: ArrayData,
                 indices: np.ndarray, batch_size: int, seed: int, threads: int = 1):
        torch.set_num_threads(threads)
        self.id = worker_id
        self.model = build_model(model_factory, seed)
        self.flat = FlatModel(self.model)
        self.data = data
        self.sampler = ShardSampler(indices, seed * 1000 + worker_id)
        self.batch_size = batch_size
        self.version = -1

    def load(self, weights: np.ndarray, version: int) -> None:
        if version > self.version:
            self.flat.load(weights)
            self.version = version

    def compute_gradient(self) -> tuple[np.ndarray, int, float]:
        """One mini-batch: (flat gradient, valid until the next call; batch size; loss)."""
        idx = self.sampler.next_batch(self.batch_size)
        x = torch.from_numpy(self.data.x[idx])
        y = torch.from_numpy(self.data.y[idx])
        self.flat.zero_grad()
        loss = F.cross_entropy(self.model(x), y)
        loss.backward()
        return self.flat.grad_vector(), len(idx), loss.item()


def run_worker(worker: Worker, server: ServerClient, bound: int | None) -> WorkerReport:
    """Train until the global budget grants this worker no more iterations."""
    gate = StalenessGate(bound)
    report = WorkerReport(worker.id)
    start = time.time()

    def timed(kind: str, t0: float) -> float:
        t1 = time.time()
        report.timeline.append((kind, t0, t1))
        return t1 - t0

    hello = server.join(worker.id)
    worker.load(hello.weights, hello.version)
    clock, known_min, tickets = hello.clock, hello.min_clock, hello.granted
    pending = None

    def absorb(reply: Reply) -> None:
        nonlocal known_min, tickets
        worker.load(reply.weights, reply.version)
        known_min = max(known_min, reply.min_clock)
        tickets += reply.granted

    while True:
        if tickets == 0:
            if pending is None:
                break
            t0 = time.time()
            absorb(server.get(pending))
            pending = None
            report.comm_s += timed("comm", t0)
            continue
        # The consistency gate: decide on what we know; only ask the server when it says wait.
        if not gate.decide(clock, known_min).proceed:
            t0 = time.time()
            while not gate.decide(clock, known_min).proceed:
                if pending is not None:
                    absorb(server.get(pending))
                    pending = None
                else:
                    absorb(server.get(server.wait_until_allowed(worker.id, clock)))
            report.wait_s += timed("wait", t0)
        t0 = time.time()
        base_version = worker.version  # the weights this gradient is computed on
        grad, batch, loss = worker.compute_gradient()
        tickets -= 1
        report.compute_s += timed("compute", t0)
        report.iterations += 1
        report.samples += batch
        t0 = time.time()
        if pending is not None:
            absorb(server.get(pending))
        pending = server.push(worker.id, clock, base_version, grad, batch, loss)
        clock += 1
        report.comm_s += timed("comm", t0)
    server.leave(worker.id)
    report.total_s = time.time() - start
    return report

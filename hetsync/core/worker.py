"""A worker: one model replica, the samples allocated to it, and the loop that trains it
against a server.

The loop is written against small client interfaces (a call returns a handle, `get` resolves
it), so that tests run it in-process and the Ray layer against actors.

A worker pushes and computes its next gradient on the weights the reply brings, which hold
its own last update; only where the extra lag fits the bound (one worker) does it keep a push
in flight while it computes. Under BSP the gate's bound of 0 makes it wait for each barrier.
Under AGWU it trains K local steps, pushes its weights and continues from the merge.
`PushPolicy` says how many gradients a push carries and whether one may be in flight.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hetsync.core.consistency import StalenessGate
from hetsync.core.devices import compute_process
from hetsync.core.partitioning import Chunk
from hetsync.core.wire import Contribution, FlatModel, Reply
from hetsync.data import ArrayData
from hetsync.emulation import StepPacer
from hetsync.errors import DivergedError
from hetsync.models import build_model


@dataclass(frozen=True)
class PushPolicy:
    """How a worker pushes: `gradients` per message, and whether it computes its next gradient
    while a push travels (`overlap`). AGWU pushes weights every `local_steps` (0: sgd)."""

    gradients: int = 1
    overlap: bool = False
    local_steps: int = 0

    @classmethod
    def choose(cls, sync: str, bound: int | None, workers: int, update: str,
               local_steps: int) -> PushPolicy:
        """Two gradients per message halve the per-call cost, but each extra gradient in
        flight adds about one version of lag per worker: so 2 only under SSP where the
        resulting lag, about 3N - 1 versions, stays within the bound S (in practice one
        worker). Measured on 4 workers, coalescing cost accuracy: ASP 0.83 instead of 0.9765,
        and SSP with IDPA on unequal nodes 0.9685 instead of 0.9785 (docs/consistency.md).

        Overlap hides the round trip, but the gradient then misses the worker's own last
        update and the others' updates of one more step: the version lag grows from about
        N-1 to 2N-1, and stale SGD's stable step shrinks with the lag. Measured on 4 workers,
        speeds 1,1,2,4, SSP S=3 + IDPA: with overlap lag 14, and one of two runs stalled at
        0.11 accuracy for 300 iterations (final 0.906); without, lag 6 and 0.976-0.978 in
        both, at the same throughput within noise. So only where 2N-1 fits the bound."""
        sgd = update == "sgd"
        pairs = sync == "ssp" and sgd and 3 * workers - 1 <= (bound or 0)
        overlap = sgd and 2 * workers - 1 <= max(bound or 0, 1)
        return cls(2 if pairs else 1, overlap, 0 if sgd else local_steps)


class ServerClient(Protocol):
    """What the worker loop needs of the server: `join` and `leave` block; `push` and
    `wait_until_allowed` return a handle that `get` resolves."""

    def join(self, worker: int) -> Reply:
        """(Re)join; blocks for the reply: the weights, the clock to go on from, the first
        tickets."""

    def push(self, worker: int, contributions: list[Contribution]) -> Any:
        """Send one push (one or more contributions); the handle's reply comes once the last of
        them is applied."""

    def wait_until_allowed(self, worker: int, clock: int) -> Any:
        """Ask for a reply once iteration `clock` may start; returns a handle."""

    def get(self, handle: Any) -> Any:
        """Block for a handle's reply; raises what stopped the server answering."""

    def leave(self, worker: int) -> None:
        """Leave for good; blocks until the server has let go of the worker."""


class AllocatorClient(Protocol):
    """What a `ChunkFeed` needs of the data allocator: `next_chunk` returns a handle that `get`
    resolves."""

    def next_chunk(self, worker: int, samples: int, seconds: float, timed: int) -> Any:
        """Report `samples` consumed since the last request, `timed` of them computed in
        `seconds`, and ask for the next chunk; returns a handle."""

    def give_back(self, worker: int, indices: np.ndarray, epoch: int) -> None:
        """Return unconsumed `indices` of `epoch` to the pool; blocks until done."""

    def get(self, handle: Any) -> Chunk:
        """Block for a `next_chunk` handle's chunk."""


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
    device: str = "cpu"  # where it computed
    # (kind, start, end) in seconds since the epoch: kind is compute, comm or wait.
    timeline: list[tuple[str, float, float]] = field(default_factory=list)

    @staticmethod
    def merge(reports: list[WorkerReport]) -> list[WorkerReport]:
        """One report per worker from the reports of its runs (a restarted worker, or every
        worker after a server restart, runs more than once)."""
        merged: dict[int, WorkerReport] = {}
        for r in reports:
            m = merged.setdefault(r.worker, WorkerReport(r.worker, device=r.device))
            for name in ("iterations", "samples", "compute_s", "comm_s", "wait_s", "total_s"):
                setattr(m, name, getattr(m, name) + getattr(r, name))
            m.timeline += r.timeline
        return [merged[w] for w in sorted(merged)]


class ChunkFeed:
    """The samples allocated to one worker, refilled from the allocator one chunk ahead. Each
    request carries the worker's measured speed since the previous one.

    The feed's first step is not timed: it carries one-time costs (the first pass allocating
    its buffers). With the wait for its chunk it lasted 80-130 ms against 13-50 ms for the
    steps after it (LeNet-5, speeds 1,1,2,4); timed, it put the first measured rates at a
    quarter to a half of the steady ones, and IDPA spent its first 1.8 s rebalancing on them."""

    def __init__(self, allocator: AllocatorClient, worker: int):
        self.allocator = allocator
        self.worker = worker
        self.segments: deque[list] = deque()  # [indices, epoch], consumed from the front
        self.batch_size = 0
        self.samples, self.timed, self.seconds = 0, 0, 0.0  # since the last request
        self.warmed_up = False  # the first step has been recorded
        self.pending = allocator.next_chunk(worker, 0, 0.0, 0)

    def _queued(self) -> int:
        return sum(len(s[0]) for s in self.segments)

    def next_batch(self) -> np.ndarray:
        """The next batch of indices, at the latest chunk's batch size; blocks on the allocator
        while fewer than that are queued."""
        while not self.batch_size or self._queued() < self.batch_size:
            chunk = self.allocator.get(self.pending)
            self.segments.append([chunk.indices, chunk.epoch])
            self.batch_size = chunk.batch_size
            self.pending = self.allocator.next_chunk(self.worker, self.samples, self.seconds,
                                                     self.timed)
            self.samples, self.timed, self.seconds = 0, 0, 0.0
        need, out = self.batch_size, []
        while need:
            seg = self.segments[0]
            out.append(seg[0][:need])
            seg[0] = seg[0][need:]
            need -= len(out[-1])
            if not len(seg[0]):
                self.segments.popleft()
        return np.concatenate(out)

    def record(self, samples: int, seconds: float) -> None:
        """Add `seconds` of compute for `samples` samples; the sums go with the next chunk
        request, as the speed IDPA measures (the first step's samples only as consumed)."""
        self.samples += samples
        if self.warmed_up:
            self.timed += samples
            self.seconds += seconds
        self.warmed_up = True

    def close(self) -> None:
        """Hand every sample allocated but not consumed back to the pool."""
        chunk = self.allocator.get(self.pending)
        self.segments.append([chunk.indices, chunk.epoch])
        for indices, epoch in self.segments:
            self.allocator.give_back(self.worker, indices, epoch)
        self.segments.clear()


class Worker:
    """One replica and its data: computes gradients (or AGWU's local steps) on `device`; the
    model and the batches live there, what it sends and receives is flat CPU vectors."""

    def __init__(self, worker_id: int, model_factory: Callable[[], nn.Module], data: ArrayData,
                 seed: int, threads: int = 1, momentum: float = 0.5,
                 pacer: StepPacer | None = None, device: torch.device | str = "cpu"):
        compute_process(threads)
        self.id = worker_id
        self.seed = seed
        self.device = torch.device(device)
        # built on the CPU, then moved: the same initial weights on every device
        self.model = build_model(model_factory, seed).to(self.device)
        self.flat = FlatModel(self.model)
        self.data = data
        self.pacer = pacer
        self.version = -1
        self.iteration = 0
        self.lr = 0.0  # AGWU's local rate: the server's schedule, sent with every reply
        self.momentum = momentum
        self.feed: ChunkFeed | None = None

    def load(self, reply: Reply) -> None:
        """Take a reply's learning rate, and its weights and buffers only if they are a newer
        global version than the replica holds. A client that copies replies into the
        replica's weights itself (`FlatModel.landing`: gloo on a CPU) has done so whatever
        the version: the server's versions only grow for one client, so a reply is never
        older than the weights the replica holds."""
        self.lr = reply.lr
        if reply.version > self.version:
            self.flat.load(reply.weights, reply.buffers)
            self.version = reply.version

    def compute_gradient(self, accuracy: bool = False) -> tuple[np.ndarray, int, float, float]:
        """One mini-batch: (flat gradient, valid until the next call; batch size; loss;
        accuracy on the batch if asked, else nan). With a pacer, the step lasts its emulated
        duration."""
        idx = self.feed.next_batch()
        began = time.time()  # waiting for a chunk is not the node's compute
        x, y = self.data.batch(idx)
        x, y = x.to(self.device), y.to(self.device)  # no copy on the CPU
        self.flat.zero_grad()
        out = self.model(x)
        loss = F.cross_entropy(out, y)
        if not torch.isfinite(loss):
            raise DivergedError(f"the training loss became {loss.item()} on worker {self.id} at "
                                f"its iteration {self.iteration}; lower --lr")
        loss.backward()
        correct = int((out.detach().argmax(1) == y).sum()) if accuracy else float("nan")
        if self.pacer is not None:
            self.pacer.pace(began, len(idx), self.iteration)
        self.iteration += 1
        self.feed.record(len(idx), time.time() - began)
        return self.flat.grad_vector(), len(idx), loss.item(), correct / len(idx)

    def local_steps(self, steps: int) -> tuple[np.ndarray, int, float, float]:
        """AGWU: `steps` plain SGD steps on the replica; (weights, samples, loss, accuracy)."""
        velocity = torch.zeros_like(self.flat.weights)
        samples, loss, correct = 0, 0.0, 0.0
        for _ in range(steps):
            _, batch, step_loss, acc = self.compute_gradient(accuracy=True)
            velocity.mul_(self.momentum).add_(self.flat.grads)  # on the device, as the weights
            self.flat.weights.sub_(self.lr * velocity)
            samples += batch
            loss += step_loss / steps
            correct += acc * batch
        return self.flat.weights.cpu().numpy(), samples, loss, correct / samples


def run_worker(worker: Worker, server: ServerClient, allocator: AllocatorClient,
               bound: int | None, policy: PushPolicy = PushPolicy()) -> WorkerReport:
    """Train until the global budget grants this worker no more iterations.

    Under AGWU (`policy.local_steps` > 0) the worker pushes weights after that many local
    steps; otherwise it pushes gradients, `policy.gradients` per message (each still applied
    as its own update). The stash is always sent before the worker blocks, so coalescing
    cannot deadlock the gate.
    """
    local_steps, push_every, overlap = policy.local_steps, policy.gradients, policy.overlap
    gate = StalenessGate(bound)
    report = WorkerReport(worker.id, device=worker.device.type)
    start = time.time()

    def timed(kind: str, t0: float) -> float:
        t1 = time.time()
        report.timeline.append((kind, t0, t1))
        return t1 - t0

    worker.version = -1  # a server restarted from a checkpoint may be at an older version
    hello = server.join(worker.id)
    # After joining: a restarted worker is live again, so its first chunk comes with the
    # batch share of the current membership.
    worker.feed = ChunkFeed(allocator, worker.id)
    worker.load(hello)
    clock, known_min, tickets = hello.clock, hello.min_clock, hello.granted
    # Random draws of the model (dropout) follow from (seed, worker, clock), so a run resumed
    # from a checkpoint draws as a fresh one at that clock would, with no per-worker state.
    torch.manual_seed(hash((worker.seed, worker.id, clock)) % 2**63)
    pending = None
    stash: list[Contribution] = []

    def absorb(reply: Reply) -> float:
        """Take a reply; return how long the server held it for the consistency model."""
        nonlocal known_min, tickets
        worker.load(reply)
        known_min = max(known_min, reply.min_clock)
        tickets += reply.granted
        return reply.waited_s

    def exchanged(t0: float, held: float) -> None:
        """A push's time since `t0`: moving bytes is communication, the time the server held
        it for the consistency model (a BSP round) is waiting, as at the gate."""
        t1 = time.time()
        held = min(held, t1 - t0)
        report.comm_s += t1 - held - t0
        report.timeline.append(("comm", t0, t1 - held))
        if held > 0:
            report.wait_s += held
            report.timeline.append(("wait", t1 - held, t1))

    def flush() -> None:
        """Collect the previous push's reply, then send the stash as the next push."""
        nonlocal pending
        t0, held = time.time(), 0.0
        if pending is not None:
            held += absorb(server.get(pending))
        pending = server.push(worker.id, list(stash))
        stash.clear()
        if not overlap:  # the next gradient starts from weights holding this push
            held += absorb(server.get(pending))
            pending = None
        exchanged(t0, held)

    while True:
        if tickets == 0:
            if stash:
                flush()
            if pending is None:
                break
            t0 = time.time()
            exchanged(t0, absorb(server.get(pending)))
            pending = None
            continue
        # The consistency gate: decide on what we know; only ask the server when it says wait.
        if not gate.decide(clock, known_min).proceed:
            if stash:
                flush()
            t0 = time.time()
            while not gate.decide(clock, known_min).proceed:
                if pending is not None:
                    absorb(server.get(pending))
                    pending = None
                else:
                    absorb(server.get(server.wait_until_allowed(worker.id, clock)))
            report.wait_s += timed("wait", t0)
        t0 = time.time()
        base_version = worker.version  # the weights this push is computed on
        if local_steps:
            steps = min(local_steps, tickets)
            payload, samples, loss, accuracy = worker.local_steps(steps)
        else:
            steps = 1
            payload, samples, loss, _ = worker.compute_gradient()
            accuracy = None
        # A copy: the gradient buffer is overwritten by the next step.
        stash.append(Contribution(clock, base_version,
                                  payload.copy() if push_every > 1 else payload, samples, loss,
                                  steps, accuracy, worker.flat.buffer_vector()))
        tickets -= steps
        report.compute_s += timed("compute", t0)
        report.iterations += steps
        report.samples += samples
        clock += 1
        if len(stash) >= push_every:
            flush()
    worker.feed.close()
    server.leave(worker.id)
    report.total_s = time.time() - start
    return report

"""What travels between processes, and the one place that converts a module to it.

A model crosses as two flat float32 numpy vectors: its parameters (or their gradients) and its
buffers (batch norm's running statistics and counters; None for a model without any). Numpy
arrays cross Ray without pickling their contents. The messages are NamedTuples: typed fields
that pickle as cheaply as the plain tuples they are, once per iteration.

Buffers follow one rule, the same under every sync mode and update rule: every global update
sets the server's buffers to the sample-weighted mean of the buffers that its pushes carry (one
push under SSP and ASP, a whole round under BSP), and a worker loads them with the weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torch import nn


class Contribution(NamedTuple):
    """One push: a gradient (sgd) or replica weights after `steps` local steps (agwu)."""

    clock: int  # the pushing worker's clock when it computed this
    base_version: int  # the global version its weights came from
    payload: np.ndarray
    samples: int
    loss: float
    steps: int = 1
    accuracy: float | None = None  # on the pushed batches (agwu's merge weight)
    buffers: np.ndarray | None = None


class Reply(NamedTuple):
    """What a worker gets back from the server: fresh weights and permission to go on."""

    weights: np.ndarray
    buffers: np.ndarray | None
    version: int  # number of updates applied to the global weights
    min_clock: int  # slowest live worker's clock, for the worker's own gate decisions
    granted: int  # iterations newly granted from the global budget
    clock: int  # the worker's own clock (meaningful on join)
    lr: float  # the scheduled learning rate now, for AGWU's local steps
    waited_s: float = 0.0  # how long the server held the call for the consistency model


class Snapshot(NamedTuple):
    """Global weights and buffers at a moment, for off-path evaluation."""

    weights: np.ndarray
    buffers: np.ndarray | None
    iterations: int
    samples: int
    version: int
    time: float


@dataclass
class Status:
    """The server's counters, as the driver polls them."""

    iterations: int  # gradients applied: the budget spent
    samples: int
    updates: int  # global versions
    loss: float | None  # moving average of the pushed losses
    max_staleness_observed: int  # what the bound S bounds
    max_version_lag: int  # global updates between a push's pull and its application
    staleness_histogram: dict[str, int] = field(default_factory=dict)
    version_lag_histogram: dict[str, int] = field(default_factory=dict)
    clocks: dict[int, int] = field(default_factory=dict)
    live_workers: list[int] = field(default_factory=list)
    budget_remaining: int = 0


# --------------------------------------------------------------------------- modules
def params_to_vector(model: nn.Module) -> np.ndarray:
    """All of a model's parameters as one flat float32 vector, on the CPU wherever they are."""
    return torch.nn.utils.parameters_to_vector(model.parameters()).detach().cpu().numpy()


def buffers_to_vector(model: nn.Module) -> np.ndarray | None:
    """All of a model's buffers as one float32 vector (counters included: float32 holds
    integers exactly up to 2**24), or None for a model without buffers."""
    buffers = list(model.buffers())
    if not buffers:
        return None
    return torch.cat([b.detach().reshape(-1).float() for b in buffers]).cpu().numpy()


def load_into(model: nn.Module, weights: np.ndarray, buffers: np.ndarray | None = None) -> None:
    """Copy flat vectors into the model's parameters and buffers (the vectors may be
    read-only)."""
    _copy_into(list(model.parameters()), _as_tensor(weights), "parameters")
    if buffers is not None:
        _copy_into(list(model.buffers()), _as_tensor(buffers), "buffer values")


def _copy_into(tensors: list[torch.Tensor], flat: torch.Tensor, what: str) -> None:
    total = sum(t.numel() for t in tensors)
    if total != flat.numel():
        raise ValueError(f"vector has {flat.numel()} values, model has {total} {what}")
    with torch.no_grad():
        offset = 0
        for t in tensors:
            n = t.numel()
            piece = flat[offset:offset + n].view(t.shape)
            t.copy_(piece.round() if not t.is_floating_point() else piece)
            offset += n


def _as_tensor(vector: np.ndarray) -> torch.Tensor:
    vector = np.asarray(vector, dtype=np.float32)
    if not vector.flags.writeable:  # arrays that arrive through Ray are read-only
        vector = vector.copy()
    return torch.from_numpy(vector)


def weighted_mean(vectors: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """The buffers of a BSP round: their mean weighted by each push's samples."""
    w = np.asarray(weights, dtype=np.float64)
    return (np.stack(vectors) * (w / w.sum())[:, None]).sum(0).astype(np.float32)


class FlatModel:
    """Re-homes a model's parameters and gradients into two contiguous buffers, so that loading
    weights is one copy and a gradient is ready to send without flattening.

    Backward accumulates into an existing `.grad` in place, so the gradient views stay inside
    the buffer; `zero_grad` must therefore zero the buffer rather than set grads to None.
    The buffers live on the model's device; what leaves (`grad_vector`, `buffer_vector`) is a
    CPU vector: on the CPU the buffer itself, on a GPU a copy.
    """

    def __init__(self, model: nn.Module):
        params = list(model.parameters())
        n = sum(p.numel() for p in params)
        device = params[0].device if params else torch.device("cpu")
        self.model = model
        self.weights = torch.empty(n, device=device)
        self.grads = torch.zeros(n, device=device)
        self.has_buffers = any(True for _ in model.buffers())
        # The weights as a writable CPU vector, for a client to copy replies straight into: with
        # several shards, one pass over memory instead of a merge and a load. None on a GPU.
        self.landing = self.weights.numpy() if device.type == "cpu" else None
        offset = 0
        with torch.no_grad():
            for p in params:
                k = p.numel()
                self.weights[offset:offset + k].copy_(p.reshape(-1))
                p.data = self.weights[offset:offset + k].view_as(p)
                p.grad = self.grads[offset:offset + k].view_as(p)
                offset += k

    def load(self, weights: np.ndarray, buffers: np.ndarray | None = None) -> None:
        """Copy flat weights, and buffers if given, into the model; the vectors may be read-only.
        Weights that are `landing` itself are in place already."""
        if weights is not self.landing:
            self.weights.copy_(_as_tensor(weights))
        if buffers is not None:
            _copy_into(list(self.model.buffers()), _as_tensor(buffers), "buffer values")

    def zero_grad(self) -> None:
        """Zero the gradient buffer in place: the grads must stay views into it, never None."""
        self.grads.zero_()

    def grad_vector(self) -> np.ndarray:
        """The gradient buffer itself on the CPU (no copy: valid until the next backward), a
        copy from a GPU."""
        return self.grads.cpu().numpy()

    def buffer_vector(self) -> np.ndarray | None:
        """A fresh copy of the buffers, or None for a model without any."""
        return buffers_to_vector(self.model) if self.has_buffers else None


# --------------------------------------------------------------------------- frames
class Frame:
    """One message as one flat float32 tensor, for a transport that moves fixed-size buffers
    (gloo point to point, where each receive must know its size): eight 64-bit header slots,
    then the payload (a gradient, replica weights, or the global weights) and the buffers.
    Pushes and replies have the same size, so one frame type serves both directions.

    Reading returns views into the frame: the receiver uses them before its next receive,
    so a gradient is read where it arrived, never copied."""

    HEAD = 8  # 64-bit slots: kind, four integers, flags, two floats
    PUSH, WAIT, BYE, REPLY, ERROR = range(5)
    LAST, HAS_ACCURACY, HAS_BUFFERS = 1, 2, 4

    def __init__(self, params: int, buffers: int = 0, data: torch.Tensor | None = None):
        """`data`: storage of `floats_for(params, buffers)` float32 to build the frame on (a
        slice of shared memory); by default its own."""
        if data is None:
            data = torch.zeros(self.floats_for(params, buffers))
        self.data = data  # what the transport moves
        # numpy views: a scalar or a copy through them costs far less than torch indexing
        view = self.data.numpy()
        head = view[:2 * self.HEAD]
        self.ints, self.floats = head.view(np.int64), head.view(np.float64)
        self.payload = view[2 * self.HEAD:2 * self.HEAD + params]
        self.buffers = view[2 * self.HEAD + params:]

    @classmethod
    def floats_for(cls, params: int, buffers: int = 0) -> int:
        """The frame's size in float32 values: the header, then the payload and buffers."""
        return 2 * cls.HEAD + params + buffers

    @property
    def kind(self) -> int:
        """What the frame carries: PUSH, WAIT, BYE, REPLY or ERROR."""
        return int(self.ints[0])

    def _head(self, kind: int, a: int, b: int, c: int, d: int, flags: int, x: float,
              y: float) -> None:
        self.ints[:6] = (kind, a, b, c, d, flags)
        self.floats[6], self.floats[7] = x, y

    def _put(self, payload: np.ndarray | None, buffers: np.ndarray | None) -> int:
        if payload is not None:
            np.copyto(self.payload, payload)
        if buffers is None:
            return 0
        np.copyto(self.buffers, buffers)
        return self.HAS_BUFFERS

    def _buffers(self, flags: int) -> np.ndarray | None:
        return self.buffers if flags & self.HAS_BUFFERS else None

    def write_contribution(self, c: Contribution, last: bool) -> None:
        """Fill the frame with one contribution; `last` marks the final frame of its push."""
        flags = self._put(c.payload, c.buffers) | (self.LAST if last else 0)
        flags |= self.HAS_ACCURACY if c.accuracy is not None else 0
        self._head(self.PUSH, c.clock, c.base_version, c.samples, c.steps, flags, c.loss,
                   c.accuracy if c.accuracy is not None else 0.0)

    def read_contribution(self) -> tuple[Contribution, bool]:
        """(the contribution, whether it is the last of its push)."""
        _, clock, base, samples, steps, flags = self.ints[:6].tolist()
        loss, accuracy = float(self.floats[6]), float(self.floats[7])
        return (Contribution(clock, base, self.payload, samples, loss, steps,
                             accuracy if flags & self.HAS_ACCURACY else None,
                             self._buffers(flags)), bool(flags & self.LAST))

    def write_request(self, kind: int, clock: int = 0) -> None:
        """A message without payload: WAIT (until `clock` may start) or BYE."""
        self._head(kind, clock, 0, 0, 0, 0, 0.0, 0.0)

    def request_clock(self) -> int:
        """The clock a WAIT asks about (on a PUSH frame, its contribution's clock)."""
        return int(self.ints[1])

    def write_reply(self, r: Reply) -> None:
        """Fill the frame with a reply: the weights, the buffers if any, and the counters."""
        flags = self._put(r.weights, r.buffers)
        self._head(self.REPLY, r.version, r.min_clock, r.granted, r.clock, flags, r.lr,
                   r.waited_s)

    def write_error(self) -> None:
        """The server could not answer (a timeout); the text travels on the control plane."""
        self._head(self.ERROR, 0, 0, 0, 0, 0, 0.0, 0.0)

    def read_reply(self) -> Reply:
        """The reply in the frame; its weights and buffers are views, valid until the next
        receive into this frame."""
        _, version, min_clock, granted, clock, flags = self.ints[:6].tolist()
        return Reply(self.payload, self._buffers(flags), version, min_clock, granted, clock,
                     float(self.floats[6]), float(self.floats[7]))

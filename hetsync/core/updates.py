"""Update rules: how the server turns what a worker pushes into new global weights.

- `sgd`: workers push gradients; the server's SGD applies them. A gradient of k samples
  enters the momentum buffer weighted k / batch_size (linear scaling), so BSP's one step on
  the union of N batches moves the weights as far as N small steps would, and under IDPA a
  worker's gradient counts by its own batch, not by the batches of the pushes after it;
  `lr(t)` follows the `LrSchedule`.
- `agwu` (asynchronous global weight update): workers train K local steps and push their
  weights W_j; the server merges on arrival, W <- W + gamma**lag * b_j * (W_j - W), where lag
  is the number of global versions since the worker pulled and b_j = acc_j / sum(acc) over the
  latest accuracies of the live workers (1/N until every worker has reported one). Under BSP
  the round's replicas are averaged with the weights b_j instead.
- `DelayCompensation` (`--delay-compensation`, with `sgd` under SSP or ASP): DC-ASGD's
  correction of a stale gradient before the SGD rule applies it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

UPDATES = ("sgd", "agwu")
# What torch.optim.SGD(fused=True) runs (CPU included); the unfused ops where a build lacks it.
_FUSED_SGD = getattr(torch, "_fused_sgd_", None)
LR_SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class LrSchedule:
    """The learning rate against the iterations done of the global budget.

    `cosine` decays from `base` to `floor * base` at the end of the budget (as nanoGPT does):
    with a constant rate, stale updates kept knocking late accuracy down by up to 0.5 between
    two evaluations (docs/consistency.md), so the final weights were a lottery. Every rule that
    steps (the server's SGD, AGWU's local steps, the benchmark's peers) reads the rate here.
    """

    base: float
    total: int
    kind: str = "cosine"
    floor: float = 0.1

    def at(self, done: int) -> float:
        """The rate after `done` iterations of the budget: `base` if constant, else the cosine,
        held at `floor * base` past the end of the budget."""
        if self.kind == "constant":
            return self.base
        progress = min(1.0, max(0, done) / max(1, self.total))
        return self.base * (self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def read_only(payload: np.ndarray) -> torch.Tensor:
    """A pushed vector as a tensor over the same memory, for reading: arrays that arrive
    through Ray are read-only, and copying one is a pass over memory the update need not
    make."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "not writable": it is only read
        return torch.from_numpy(payload)


class SgdRule:
    """SGD with momentum, in place on the flat weights: `u = m * u + (k / B) * g; w -= lr * u`
    for a gradient g of k samples (B: batch_size), torch.optim.SGD's arithmetic (dampening 0)
    on a loss scaled by k / B, with no temporary vector.

    Scaling the step instead (`w -= lr * (k / B) * buf`) would weight every gradient still in
    the buffer by the newest push's batch: under IDPA's unequal batches a 23-sample gradient
    would count as much as a 94-sample one. The buffer is kept as u / s, s the last push's
    k / B, so that torch's fused kernel does it in one pass: momentum m * s_prev / s, rate
    lr * s. The state saves the buffer and s as they are (a resume is exact); a state without
    s (saved before 2026-12-06, when the buffer was exactly this u / s) takes the next push's."""

    def __init__(self, w: torch.nn.Parameter, schedule: LrSchedule, momentum: float,
                 batch_size: int):
        self.w = w.data
        self.schedule = schedule
        self.momentum = momentum
        self.buf: torch.Tensor | None = None  # u / scale (class docstring), from the first step on
        self.scale: float | None = None  # k / batch_size of the last step: `buf` is u / scale
        self.done = 0  # iterations applied so far: where the schedule stands
        self.batch_size = batch_size
        self._mean: torch.Tensor | None = None  # BSP: the round's weighted mean, reused

    def apply(self, payload: np.ndarray, samples: int, lag: int, worker: int,
              accuracy: float | None, live: set[int]) -> None:
        """One step on a pushed gradient of `samples` samples, weighted samples / batch_size;
        the other arguments are AGWU's and ignored here."""
        self._step(read_only(payload), samples, 1)

    def apply_round(self, contributions: list[tuple[int, np.ndarray, int, float | None]]) -> None:
        """BSP: one step on the round's gradients averaged by samples, at the rate for all their
        samples; the schedule moves on by one iteration per gradient."""
        total = sum(s for _, _, s, _ in contributions)
        if self._mean is None:
            self._mean = torch.empty_like(self.w)
        self._mean.zero_()
        for _, payload, samples, _ in contributions:
            self._mean.add_(read_only(payload), alpha=samples / total)
        self._step(self._mean, total, len(contributions))

    def state_dict(self) -> dict:
        """The momentum buffer (u / scale), its scale and where the schedule stands (tensors and
        numbers only)."""
        return {"momentum_buffer": None if self.buf is None else self.buf.clone(),
                "scale": self.scale, "done": self.done}

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state_dict`; the buffer is copied, so the saved state stays unchanged."""
        self.buf = None if state["momentum_buffer"] is None else state["momentum_buffer"].clone()
        self.scale = state.get("scale")
        self.done = state["done"]

    def _step(self, grad: torch.Tensor, samples: int, gradients: int) -> None:
        lr = self.schedule.at(self.done)
        scale = samples / self.batch_size
        # the buffer held u / self.scale; from here on it holds u / scale (class docstring)
        momentum = (self.momentum if self.scale in (None, scale)
                    else self.momentum * self.scale / scale)
        with torch.no_grad():
            if self.momentum and self.buf is None:
                self.buf = grad.clone()
                self.w.add_(self.buf, alpha=-lr * scale)
            elif self.momentum and _FUSED_SGD is not None:
                # buf = m * buf + grad and w -= lr * buf in one pass over memory: the unfused
                # ops pass three times (measured 5.5 against 10.4 ms on 11.2 M parameters)
                _FUSED_SGD([self.w], [grad], [self.buf], weight_decay=0.0,
                           momentum=momentum, lr=lr * scale, dampening=0.0, nesterov=False,
                           maximize=False, is_first_step=False)
            elif self.momentum:
                self.buf.mul_(momentum).add_(grad)
                self.w.add_(self.buf, alpha=-lr * scale)
            else:
                self.w.add_(grad, alpha=-lr * scale)
        self.scale = scale
        self.done += gradients


class DelayCompensation:
    """DC-ASGD-a (Zheng et al., ICML 2017, arXiv:1609.08326): a gradient g computed on the
    weights w_p a worker pulled, `lag` versions before the weights w it is applied to, is moved
    toward the gradient at w by the first-order Taylor term, the Hessian approximated by
    lambda * g * g (the diagonal of the gradient's outer product): g + lambda_t * g * g * (w - w_p),
    with lambda_t = strength / sqrt(MS + eps) per coordinate, MS the running mean square of the
    gradients (decay 0.95), so that one strength serves every layer. SGD on stale gradients
    needs more samples than on fresh ones; this gives part of them back at the cost of one
    copy of the weights per worker and a few passes over the weights per push.

    A gradient whose base is not the worker's last pulled weights (a push computed while the
    previous one travelled, a worker that rejoined) goes through uncorrected."""

    DECAY, EPS = 0.95, 1e-7

    def __init__(self, w: torch.Tensor, strength: float):
        self.w, self.strength = w, strength
        self.mean_square = torch.zeros_like(w)
        self.pulled: dict[int, tuple[int, torch.Tensor]] = {}  # worker: (version, weights)
        self._out = torch.empty_like(w)
        self._scale = torch.empty_like(w)

    def replied(self, worker: int, version: int) -> None:
        """`worker` was sent the weights of `version`: its next gradient is computed on them."""
        kept = self.pulled.get(worker)
        copy = kept[1] if kept is not None else torch.empty_like(self.w)
        copy.copy_(self.w)
        self.pulled[worker] = (version, copy)

    def forget(self, worker: int) -> None:
        """`worker` left: its copy goes."""
        self.pulled.pop(worker, None)

    def correct(self, payload: np.ndarray, worker: int, base_version: int,
                version: int) -> np.ndarray:
        """The gradient `payload`, computed on `base_version`, corrected for the weights of
        `version`; every gradient enters the mean square, a fresh one leaves unchanged."""
        g = read_only(payload)
        self.mean_square.mul_(self.DECAY).addcmul_(g, g, value=1 - self.DECAY)
        kept = self.pulled.get(worker)
        if base_version == version or kept is None or kept[0] != base_version:
            return payload
        out = torch.sub(self.w, kept[1], out=self._out).mul_(g).mul_(g)
        scale = torch.sqrt(self.mean_square, out=self._scale).add_(self.EPS)
        return torch.addcdiv(g, out, scale, value=self.strength, out=out).numpy()

    def state_dict(self) -> dict:
        """The mean square (the pulled copies are not kept: a resumed server replies to every
        worker before it pushes)."""
        return {"mean_square": self.mean_square.clone()}

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state_dict`."""
        self.mean_square.copy_(state["mean_square"])


class AgwuRule:
    """AGWU's merge (module docstring): a replica pulls the weights toward it by gamma**lag * b_j
    on arrival; under BSP the round's replicas are averaged by b_j."""

    def __init__(self, w: torch.nn.Parameter, gamma: float):
        self.w = w
        self.gamma = gamma
        self.accuracy: dict[int, float] = {}

    def weight_of(self, worker: int, live: set[int]) -> float:
        """b_j: accuracy-proportional once every live worker has reported, else 1/N."""
        if live and all(w in self.accuracy for w in live) and sum(
                self.accuracy[w] for w in live) > 0:
            return self.accuracy[worker] / sum(self.accuracy[w] for w in live)
        return 1.0 / max(1, len(live))

    def state_dict(self) -> dict:
        """Each worker's latest reported accuracy, from which b_j is computed."""
        return {"accuracy": dict(self.accuracy)}

    def load_state_dict(self, state: dict) -> None:
        """Continue from the accuracies `state_dict` saved."""
        self.accuracy = {int(w): float(a) for w, a in state["accuracy"].items()}

    def apply(self, payload: np.ndarray, samples: int, lag: int, worker: int,
              accuracy: float | None, live: set[int]) -> float:
        """Merge one replica, W += coef * (replica - W) with coef = gamma**lag * b_j, after
        recording `accuracy`; returns coef. `samples` plays no part."""
        if accuracy is not None:
            self.accuracy[worker] = accuracy
        coef = self.gamma ** lag * self.weight_of(worker, live | {worker})
        with torch.no_grad():  # w + coef * (replica - w), in place
            self.w.mul_(1 - coef).add_(read_only(payload), alpha=coef)
        return coef

    def apply_round(self, contributions: list[tuple[int, np.ndarray, int, float | None]]) -> None:
        """BSP: the weights become the round's replicas averaged by b_j (over the round's
        workers), after recording their accuracies; lag plays no part."""
        for worker, _, _, acc in contributions:
            if acc is not None:
                self.accuracy[worker] = acc
        workers = {w for w, _, _, _ in contributions}
        coefs = torch.tensor([self.weight_of(w, workers) for w, _, _, _ in contributions])
        replicas = torch.stack([torch.tensor(p) for _, p, _, _ in contributions])
        with torch.no_grad():
            self.w.copy_((replicas * (coefs / coefs.sum())[:, None]).sum(0))

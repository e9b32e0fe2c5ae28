"""Update rules: how the server turns what a worker pushes into new global weights.

- `sgd`: workers push gradients; the server's SGD applies them. A step that merges k samples
  uses `lr(t) * k / batch_size` (linear scaling), so BSP's one step on the union of N batches
  moves the weights as far as N small steps would; `lr(t)` follows the `LrSchedule`.
- `agwu` (asynchronous global weight update): workers train K local steps and push their
  weights W_j; the server merges on arrival, W <- W + gamma**lag * b_j * (W_j - W), where lag
  is the number of global versions since the worker pulled and b_j = acc_j / sum(acc) over the
  latest accuracies of the live workers (1/N until every worker has reported one). Under BSP
  the round's replicas are averaged with the weights b_j instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

UPDATES = ("sgd", "agwu")
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
        if self.kind == "constant":
            return self.base
        progress = min(1.0, max(0, done) / max(1, self.total))
        return self.base * (self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * progress)))


class SgdRule:
    def __init__(self, w: torch.nn.Parameter, schedule: LrSchedule, momentum: float,
                 batch_size: int):
        self.w = w
        self.schedule = schedule
        self.done = 0  # iterations applied so far: where the schedule stands
        self.batch_size = batch_size
        self.opt = torch.optim.SGD([w], lr=schedule.base, momentum=momentum)

    def apply(self, payload: np.ndarray, samples: int, lag: int, worker: int,
              accuracy: float | None, live: set[int]) -> None:
        self._step(torch.tensor(payload), samples, 1)

    def apply_round(self, contributions: list[tuple[int, np.ndarray, int, float | None]]) -> None:
        grads = torch.stack([torch.tensor(p) for _, p, _, _ in contributions])
        sizes = torch.tensor([float(s) for _, _, s, _ in contributions])
        self._step((grads * (sizes / sizes.sum())[:, None]).sum(0), int(sizes.sum()),
                   len(contributions))

    def state_dict(self) -> dict:
        # The momentum buffer (tensors and numbers only) and where the schedule stands.
        return {"optimizer": self.opt.state_dict(), "done": self.done}

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state["optimizer"])
        self.done = state["done"]

    def _step(self, grad: torch.Tensor, samples: int, gradients: int) -> None:
        self.opt.param_groups[0]["lr"] = self.schedule.at(self.done) * samples / self.batch_size
        self.w.grad = grad.to(self.w.dtype).reshape(self.w.shape)
        self.opt.step()
        self.done += gradients


class AgwuRule:
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
        return {"accuracy": dict(self.accuracy)}

    def load_state_dict(self, state: dict) -> None:
        self.accuracy = {int(w): float(a) for w, a in state["accuracy"].items()}

    def apply(self, payload: np.ndarray, samples: int, lag: int, worker: int,
              accuracy: float | None, live: set[int]) -> float:
        if accuracy is not None:
            self.accuracy[worker] = accuracy
        coef = self.gamma ** lag * self.weight_of(worker, live | {worker})
        with torch.no_grad():
            self.w.add_(coef * (torch.tensor(payload) - self.w))
        return coef

    def apply_round(self, contributions: list[tuple[int, np.ndarray, int, float | None]]) -> None:
        for worker, _, _, acc in contributions:
            if acc is not None:
                self.accuracy[worker] = acc
        workers = {w for w, _, _, _ in contributions}
        coefs = torch.tensor([self.weight_of(w, workers) for w, _, _, _ in contributions])
        replicas = torch.stack([torch.tensor(p) for _, p, _, _ in contributions])
        with torch.no_grad():
            self.w.copy_((replicas * (coefs / coefs.sum())[:, None]).sum(0))

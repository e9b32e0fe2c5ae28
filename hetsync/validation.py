"""Evaluation of weight snapshots on the validation set, off the training critical path (the
driver evaluates on a thread of its own)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hetsync.data import ArrayData
from hetsync.models import build_model
from hetsync.wire import vector_to_params


@torch.no_grad()
def evaluate(model: nn.Module, data: ArrayData, batch_size: int = 1000) -> tuple[float, float]:
    """(mean cross-entropy loss, accuracy) of `model` on `data`."""
    model.eval()
    loss, correct = 0.0, 0
    for i in range(0, len(data), batch_size):
        x = torch.tensor(data.x[i:i + batch_size])  # a copy: object-store arrays are read-only
        y = torch.tensor(data.y[i:i + batch_size])
        out = model(x)
        loss += float(F.cross_entropy(out, y, reduction="sum"))
        correct += int((out.argmax(1) == y).sum())
    model.train()
    return loss / len(data), correct / len(data)


class Evaluator:
    """One model to load snapshots into, and the validation data."""

    def __init__(self, model_factory: Callable[[], nn.Module], data: ArrayData):
        self.model = build_model(model_factory, 0)
        self.data = data

    def evaluate(self, weights: np.ndarray) -> tuple[float, float]:
        vector_to_params(weights, self.model)
        return evaluate(self.model, self.data)

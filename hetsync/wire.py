"""What travels between processes: a model's parameters (or gradients) as one flat float32
numpy vector. Numpy arrays cross Ray without pickling their contents; this is the one place
that converts between modules and vectors."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def params_to_vector(model: nn.Module) -> np.ndarray:
    return torch.nn.utils.parameters_to_vector(model.parameters()).detach().numpy()


def vector_to_params(vector: np.ndarray, model: nn.Module) -> None:
    """Copy a flat vector into the model's parameters (the vector may be read-only)."""
    flat = _as_tensor(vector)
    with torch.no_grad():
        offset = 0
        for p in model.parameters():
            n = p.numel()
            p.copy_(flat[offset:offset + n].view_as(p))
            offset += n
    if offset != flat.numel():
        raise ValueError(f"vector has {flat.numel()} values, model has {offset} parameters")


def _as_tensor(vector: np.ndarray) -> torch.Tensor:
    vector = np.asarray(vector, dtype=np.float32)
    if not vector.flags.writeable:  # arrays that arrive through Ray are read-only
        vector = vector.copy()
    return torch.from_numpy(vector)


class FlatModel:
    """Re-homes a model's parameters and gradients into two contiguous buffers, so that loading
    weights is one copy and a gradient is ready to send without flattening.

    Backward accumulates into an existing `.grad` in place, so the gradient views stay inside
    the buffer; `zero_grad` must therefore zero the buffer rather than set grads to None.
    """

    def __init__(self, model: nn.Module):
        params = list(model.parameters())
        n = sum(p.numel() for p in params)
        self.model = model
        self.weights = torch.empty(n)
        self.grads = torch.zeros(n)
        offset = 0
        with torch.no_grad():
            for p in params:
                k = p.numel()
                self.weights[offset:offset + k].copy_(p.reshape(-1))
                p.data = self.weights[offset:offset + k].view_as(p)
                p.grad = self.grads[offset:offset + k].view_as(p)
                offset += k

    def load(self, vector: np.ndarray) -> None:
        self.weights.copy_(_as_tensor(vector))

    def zero_grad(self) -> None:
        self.grads.zero_()

    def grad_vector(self) -> np.ndarray:
        """The gradient buffer itself (no copy): valid until the next backward."""
        return self.grads.numpy()

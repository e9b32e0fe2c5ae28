"""`ArrayData`, the one form every dataset takes before training, and the conversion of any
map-style Dataset into it.

Everything a worker trains on is an `ArrayData` (float32 inputs, int64 labels): it travels
through Ray's object store once, zero-copy, and a worker's shard is a list of indices into it,
so moving work between workers never moves pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hetsync.errors import DataError


@dataclass
class ArrayData:
    """Inputs and labels as arrays: what workers index into and the evaluator reads."""

    x: np.ndarray  # float32, (N, C, H, W) or (N, features)
    y: np.ndarray  # int64, (N,)

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise DataError(f"{len(self.x)} inputs but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: np.ndarray) -> ArrayData:
        return ArrayData(self.x[idx], self.y[idx])

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The samples at `idx` as (inputs, labels) tensors for the model. Indexing by an
        array copies, so the tensors are writable even where the arrays came read-only
        through Ray."""
        return torch.from_numpy(self.x[idx]), torch.from_numpy(self.y[idx])


def from_torch(dataset) -> ArrayData:
    """Materialise a map-style Dataset of (input tensor, int label) into arrays, once."""
    n = len(dataset)
    if n == 0:
        raise DataError("the dataset is empty")
    try:
        items = [dataset[i] for i in range(n)]
        x = torch.stack([torch.as_tensor(item[0], dtype=torch.float32) for item in items])
        y = torch.as_tensor([int(item[1]) for item in items], dtype=torch.int64)
    except (TypeError, ValueError, IndexError, RuntimeError) as e:
        raise DataError(f"the dataset must yield (tensor, integer label) pairs of one shape: {e}") from e
    if int(y.min()) < 0:
        raise DataError(f"the dataset has negative label {int(y.min())}")
    return ArrayData(x.numpy(), y.numpy())

"""`ArrayData`, the one form every dataset takes before training, and the conversion of any
map-style Dataset into it.

Everything a worker trains on is an `ArrayData` (float32 inputs, int64 labels): it travels
through Ray's object store once, zero-copy, and a worker's shard is a list of indices into it,
so moving work between workers never moves pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from hetsync.errors import DataError


@dataclass
class ArrayData:
    """Inputs and labels as arrays: what workers index into and the evaluator reads. It
    also says what a registered model is built for: the shape of one sample and the number
    of classes (a dataset's own, which a split keeps even where a part lacks a class)."""

    x: np.ndarray  # float32, (N, C, H, W) or (N, features)
    y: np.ndarray  # int64, (N,)
    classes: int | None = None  # None: the largest label + 1
    # what a user of the trained model needs to know of the data: the normalisation
    # (mean, std per channel, on the 0..1 scale) and class names where the format has them
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise DataError(f"{len(self.x)} inputs but {len(self.y)} labels")
        if self.classes is None:
            self.classes = int(self.y.max()) + 1 if len(self.y) else 0
        if len(self.y) and not 0 <= int(self.y.min()) <= int(self.y.max()) < self.classes:
            raise DataError(f"labels run from {int(self.y.min())} to {int(self.y.max())}, "
                            f"outside 0..{self.classes - 1}")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """One input's shape, (C, H, W) for images: what a registered model is built for."""
        return tuple(self.x.shape[1:])

    def subset(self, idx: np.ndarray) -> ArrayData:
        return ArrayData(self.x[idx], self.y[idx], self.classes, self.info)

    def describe(self, val: ArrayData) -> dict[str, Any]:
        """For summary.json: the sizes, the input shape, the classes and `info`."""
        return {"train_samples": len(self), "val_samples": len(val),
                "sample_shape": list(self.sample_shape), "classes": self.classes, **self.info}

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

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

SPLIT_SEED = 20_231_121  # fixed: a held-out split must not move with --seed



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
        """The samples at `idx`, with the whole set's classes and info (a split's parts
        share one model)."""
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


# --------------------------------------------------------------------------- images
def holdout(n: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation indices for data that comes without a split of its own: the
    last `fraction` of a fixed permutation (the same for every run and seed, so that runs
    compared with each other, and a resumed run, validate on the same samples)."""
    n_val = round(n * fraction)
    if not 0 < n_val < n:
        left = "no validation" if n_val == 0 else "no training"
        raise DataError(f"--val-fraction {fraction:g} of {n} samples leaves {left} samples")
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    return perm[:n - n_val], perm[n - n_val:]


def pixel_statistics(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 images (N, C, H, W) on the 0..1
    scale, exact from each channel's histogram: no float copy of the data is made (CIFAR-10's
    training set would take 1.2 GB as float64)."""
    means, stds = [], []
    values = np.arange(256, dtype=np.float64)
    for c in range(images.shape[1]):
        counts = np.bincount(images[:, c].ravel(), minlength=256).astype(np.float64)
        n = counts.sum()
        mean = float((values * counts).sum() / n)
        std = float(np.sqrt(((values - mean) ** 2 * counts).sum() / n))
        means.append(round(mean / 255, 6))
        stds.append(round(std / 255, 6) if std > 0 else 1.0)  # a constant channel: shift only
    return means, stds


def normalise(images: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """uint8 images (N, C, H, W) as float32 `(x / 255 - mean) / std` per channel, in float32
    arithmetic throughout (for MNIST's constants, the values earlier versions computed)."""
    x = images.astype(np.float32)
    x /= np.float32(255.0)
    x -= np.asarray(mean, np.float32)[None, :, None, None]
    x /= np.asarray(std, np.float32)[None, :, None, None]
    return x


def image_split(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
                classes: int, info: dict[str, Any] | None = None) -> tuple[ArrayData, ArrayData]:
    """(train, validation) from uint8 images (N, C, H, W) and their labels, both normalised
    with the training part's own statistics: a data set's pixels are not MNIST's, and the
    validation part must not leak into them. The statistics go into `info`, where a user of
    the trained model finds them."""
    mean, std = pixel_statistics(train[0])
    info = {**(info or {}), "mean": mean, "std": std}
    return tuple(ArrayData(normalise(x, mean, std), y.astype(np.int64), classes, info)
                 for x, y in (train, val))  # type: ignore[return-value]

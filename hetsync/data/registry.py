"""The registered datasets by name, and the (train, validation) pair of a run's config."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hetsync.data.arrays import ArrayData, from_torch
from hetsync.data.cifar import load_cifar10
from hetsync.data.folder import load_image_folder
from hetsync.data.idx import load_idx_folder
from hetsync.data.mnist import load_mnist, load_mnist_10k
from hetsync.data.synthetic import load_synthetic

# name -> loader of (train, validation), given the data section and the run's seed
DATASETS: dict[str, Callable[..., tuple[ArrayData, ArrayData]]] = {
    "cifar10": lambda d, seed: load_cifar10(d.data_dir),
    "folder": lambda d, seed: load_image_folder(d.data_dir, d.image_size, d.image_mode,
                                                d.val_fraction),
    "idx": lambda d, seed: load_idx_folder(d.data_dir, d.val_fraction),
    "mnist": lambda d, seed: load_mnist(d.data_dir),
    "mnist-10k": lambda d, seed: load_mnist_10k(d.data_dir),
    "synthetic": lambda d, seed: load_synthetic(d.synthetic_samples, seed),
}


def load_dataset(cfg) -> tuple[ArrayData, ArrayData]:
    """(train, validation) for a `TrainConfig`: a registered name or user Dataset objects."""
    d, seed = cfg.data, cfg.training.seed
    if isinstance(d.dataset, str):
        return DATASETS[d.dataset](d, seed)
    train = from_torch(d.dataset)
    if d.val_dataset is not None:
        val = from_torch(d.val_dataset)
        train.classes = val.classes = max(train.classes, val.classes)  # one model for both
        return train, val
    perm = np.random.default_rng(seed).permutation(len(train))
    n_val = max(1, len(train) // 10)
    return train.subset(perm[n_val:]), train.subset(perm[:n_val])

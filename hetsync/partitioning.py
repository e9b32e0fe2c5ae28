"""How the training data is divided among workers."""

from __future__ import annotations

import numpy as np


def uniform_shards(n_samples: int, workers: int, seed: int) -> list[np.ndarray]:
    """Disjoint, near-equal random shards covering every sample exactly once."""
    perm = np.random.default_rng(seed).permutation(n_samples)
    return [np.sort(s) for s in np.array_split(perm, workers)]

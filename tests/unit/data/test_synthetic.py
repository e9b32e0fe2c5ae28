"""Synthetic data."""

import numpy as np

from hetsync import data


def test_synthetic_data_follows_the_seed():
    a, _ = data.load_synthetic(64, seed=0)
    b, _ = data.load_synthetic(64, seed=1)
    assert not np.array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.x, data.load_synthetic(64, seed=0)[0].x)

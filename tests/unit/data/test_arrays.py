"""ArrayData, the held-out split, and normalisation with a data set's own statistics."""

import numpy as np
import pytest
import torch

from hetsync import data
from hetsync.config import TrainConfig
from hetsync.errors import DataError


def test_pixel_statistics_are_exact_per_channel_and_normalise_uses_them():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (50, 3, 8, 8), dtype=np.uint8)
    images[:, 2] = 7  # a constant channel is shifted only, not divided by zero
    mean, std = data.pixel_statistics(images)
    as_float = images.astype(np.float64) / 255
    assert mean == pytest.approx(as_float.mean(axis=(0, 2, 3)), abs=1e-6)
    assert std[:2] == pytest.approx(as_float.std(axis=(0, 2, 3))[:2], abs=1e-6)
    assert std[2] == 1.0
    x = data.normalise(images, mean, std)
    assert x.dtype == np.float32 and x.shape == images.shape
    assert np.abs(x.mean(axis=(0, 2, 3))).max() < 1e-4


def test_image_split_normalises_both_parts_with_the_training_statistics():
    train = (np.full((4, 1, 2, 2), 100, np.uint8), np.array([0, 1, 0, 1]))
    val = (np.full((2, 1, 2, 2), 200, np.uint8), np.array([1, 0]))
    t, v = data.image_split(train, val, classes=3, info={"class_names": ["a", "b", "c"]})
    assert np.allclose(t.x, 0, atol=1e-5) and np.all(v.x > 0.3)  # not the validation mean
    assert t.classes == v.classes == 3 and t.info["class_names"] == ["a", "b", "c"]
    assert t.info["mean"] == [round(100 / 255, 6)]


def test_the_held_out_split_is_fixed_and_refuses_an_empty_part():
    a_train, a_val = data.holdout(100, 0.25)
    b_train, b_val = data.holdout(100, 0.25)
    np.testing.assert_array_equal(a_val, b_val)
    assert len(a_val) == 25 and sorted([*a_train, *a_val]) == list(range(100))
    with pytest.raises(DataError, match="--val-fraction 0.9 of 3 samples leaves no training"):
        data.holdout(3, 0.9)


def test_labels_outside_the_classes_are_refused_and_a_subset_keeps_the_classes():
    with pytest.raises(DataError, match="labels run from 0 to 5, outside 0..2"):
        data.ArrayData(np.zeros((2, 1)), np.array([0, 5]), classes=3)
    d = data.ArrayData(np.zeros((3, 1, 2, 2), np.float32), np.array([0, 1, 4]))
    assert d.classes == 5 and d.subset(np.array([0])).classes == 5
    assert d.sample_shape == (1, 2, 2)


def test_user_datasets_share_one_number_of_classes():
    train = [(torch.zeros(1, 4, 4), i % 3) for i in range(12)]
    val = [(torch.zeros(1, 4, 4), 6)]  # a class the training part lacks: the model has it
    t, v = data.load_dataset(TrainConfig.from_flat(dataset=train, val_dataset=val, workers=1))
    assert t.classes == v.classes == 7

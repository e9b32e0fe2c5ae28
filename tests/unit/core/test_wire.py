"""What travels: flat vectors of a model's parameters and buffers, and back."""

import numpy as np
import pytest
import torch
from torch import nn

from hetsync.core.wire import (
    FlatModel,
    buffers_to_vector,
    load_into,
    params_to_vector,
    weighted_mean,
)
from hetsync.models import LeNet5, ResNet18, build_model


def _bn_net():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 3))


def test_buffers_travel_with_their_counters_and_come_back_exactly():
    a, b = build_model(_bn_net, 0), build_model(_bn_net, 1)
    a(torch.randn(5, 1, 8, 8) * 3 + 7)  # train-mode forward: running stats and counter move
    load_into(b, params_to_vector(a), buffers_to_vector(a))
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    assert int(b[1].num_batches_tracked) == 1
    assert buffers_to_vector(build_model(LeNet5, 0)) is None  # no buffers: nothing travels
    with pytest.raises(ValueError, match="model has 9 buffer values"):
        load_into(b, params_to_vector(a), np.zeros(3, np.float32))


def test_flat_model_loads_weights_and_buffers_and_copies_its_buffers_out():
    model = build_model(_bn_net, 0)
    flat = FlatModel(model)
    source = build_model(_bn_net, 3)
    source(torch.randn(4, 1, 8, 8))
    flat.load(params_to_vector(source), buffers_to_vector(source))
    np.testing.assert_array_equal(flat.buffer_vector(), buffers_to_vector(source))
    out = flat.buffer_vector()
    model(torch.randn(4, 1, 8, 8))
    assert not np.array_equal(out, flat.buffer_vector())  # a copy, not a view
    assert FlatModel(build_model(LeNet5, 0)).buffer_vector() is None


def test_weights_copied_into_the_landing_vector_are_the_models_and_need_no_load(monkeypatch):
    model = build_model(_bn_net, 0)
    flat = FlatModel(model)
    source = build_model(_bn_net, 3)
    np.copyto(flat.landing, params_to_vector(source))  # what a client does with a reply
    np.testing.assert_array_equal(params_to_vector(model), params_to_vector(source))
    copied = []
    monkeypatch.setattr(flat.weights, "copy_", lambda src: copied.append(src), raising=False)
    flat.load(flat.landing, buffers_to_vector(source))  # the weights in place, buffers copied
    assert not copied
    np.testing.assert_array_equal(params_to_vector(model), params_to_vector(source))
    flat.load(params_to_vector(source))  # any other vector is copied
    assert len(copied) == 1
    np.testing.assert_array_equal(flat.buffer_vector(), buffers_to_vector(source))


def test_resnet18_buffers_are_a_small_vector_beside_its_parameters():
    model = build_model(ResNet18, 0)
    assert params_to_vector(model).size == 11_172_810
    assert 9_000 < buffers_to_vector(model).size < 10_000


def test_a_round_of_buffers_is_weighted_by_samples():
    got = weighted_mean([np.array([0.0, 2.0], np.float32), np.array([4.0, 6.0], np.float32)],
                        [3, 1])
    np.testing.assert_allclose(got, [1.0, 3.0])

"""Registered models are built for the data's input shape and classes."""

import pytest
import torch
from torch import nn

from hetsync.errors import ConfigError
from hetsync.models import LeNet5, build_model, resolve_model


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name,shape,classes,params", [
    ("lenet5", (1, 28, 28), 10, 61_706),       # MNIST: the reference experiment's count
    ("lenet5", (3, 32, 32), 10, 62_006),       # CIFAR-10: C1 takes 3 channels, no padding
    ("resnet-small", (3, 32, 32), 10, 78_042),  # ResNet-8
    ("resnet-small", (1, 28, 28), 7, 77_559),
])
def test_a_registered_model_takes_the_shape_and_classes_of_the_data(name, shape, classes,
                                                                     params):
    model = build_model(resolve_model(name, shape, classes), 0)
    assert _params(model) == params
    assert model(torch.zeros(2, *shape)).shape == (2, classes)


def test_the_residual_network_has_batch_norm_and_a_residual_path():
    model = build_model(resolve_model("resnet-small", (3, 32, 32), 10), 0)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum(1 for _ in model.buffers()) > 0  # running statistics: they travel (wire.py)


@pytest.mark.parametrize("name,shape,message", [
    ("lenet5", (3, 64, 64), "--model lenet5 takes square images of 28, 30 or 32 pixels"),
    ("lenet5", (20,), "--model lenet5 takes images .channels, height, width."),
    ("resnet-small", (20,), "--model resnet-small takes images"),
])
def test_a_model_that_cannot_take_the_data_is_one_line_naming_the_flag(name, shape, message):
    with pytest.raises(ConfigError, match=message):
        resolve_model(name, shape, 10)


def test_a_users_factory_is_taken_as_it_is():
    assert resolve_model(LeNet5, (3, 64, 64), 4) is LeNet5

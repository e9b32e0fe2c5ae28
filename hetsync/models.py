"""Models by name, built for the data's input shape and classes, and the factory resolution
that lets any nn.Module factory be trained."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from hetsync.errors import ConfigError


class LeNet5(nn.Module):
    """LeNet-5 as in the reference experiment: 3 convolutions (C1, C3, C5), 2 pooling layers
    (S2, S4), one fully connected layer (F6) and the output layer. Its layers fit the classic
    32x32 input: 28x28 inputs (MNIST) are padded to it by C1's padding, 32x32 ones (CIFAR-10)
    are taken as they are. 61,706 parameters for 1 channel and 10 classes."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28):
        super().__init__()
        if image_size not in LENET5_SIZES:
            raise ValueError(f"LeNet-5 takes images of {'/'.join(map(str, LENET5_SIZES))} "
                             f"pixels square (got {image_size})")
        pad = (32 - image_size) // 2
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=pad), nn.ReLU(), nn.MaxPool2d(2),  # C1, S2
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),                     # C3, S4
            nn.Conv2d(16, 120, 5), nn.ReLU(),                                     # C5
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(120, 84), nn.ReLU(),                          # F6
            nn.Linear(84, num_classes),                                           # output
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, classes) of images (N, C, H, H), H in LENET5_SIZES; no softmax, the loss
        takes logits."""
        return self.classifier(self.features(x))


LENET5_SIZES = (28, 30, 32)  # padded to 32 by C1


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projection) shortcut:
    the residual unit of He et al. (2016) that both residual networks here are made of."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = nn.Sequential() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """relu(body(x) + shortcut(x)): `cout` channels, height and width divided by the stride."""
        return torch.relu(self.body(x) + self.skip(x))


class ResNet18(nn.Module):
    """ResNet-18 in its small-image form (3x3 stem, no initial pooling), for 28x28 or 32x32
    inputs: 11.2 M parameters, the heavier model of the overhead benchmark."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        layers, cin = [], 64
        for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
            *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, classes) of images (N, C, H, W); batch norm makes train and eval mode
        differ."""
        return self.net(x)


class ResNetSmall(nn.Module):
    """The residual network He et al. (2016) used on CIFAR-10, in its smallest form: a 3x3
    stem and three stages of 16, 32 and 64 channels, each of `blocks` BasicBlocks (batch
    norm in every one), the last two halving the resolution, then global average pooling.
    `blocks=1` is ResNet-8 (78 k parameters for 3 channels and 10 classes), light enough to
    train on CPU workers; `blocks=3` is ResNet-20. Any image size (the pooling adapts)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, blocks: int = 1):
        super().__init__()
        layers, cin = [], 16
        for cout, stride in [(16, 1), (32, 2), (64, 2)]:
            for b in range(blocks):
                layers.append(BasicBlock(cin, cout, stride if b == 0 else 1))
                cin = cout
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, classes) of images (N, C, H, W) of any size; batch norm makes train and
        eval mode differ."""
        return self.net(x)


def _image(name: str, shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ConfigError(f"--model {name} takes images (channels, height, width); the data's "
                          f"samples have shape {shape}")
    return shape  # type: ignore[return-value]


def _lenet5(shape: tuple[int, ...], classes: int) -> Callable[[], nn.Module]:
    c, h, w = _image("lenet5", shape)
    if h != w or h not in LENET5_SIZES:
        raise ConfigError(f"--model lenet5 takes square images of 28, 30 or 32 pixels (MNIST's "
                          f"28x28, CIFAR-10's 32x32); the data's are {h}x{w}: use --model "
                          "resnet-small, or --image-size 32 for an image folder")
    return partial(LeNet5, num_classes=classes, in_channels=c, image_size=h)


def _residual(cls: type[nn.Module], name: str):
    def build(shape: tuple[int, ...], classes: int) -> Callable[[], nn.Module]:
        c, _, _ = _image(name, shape)
        return partial(cls, num_classes=classes, in_channels=c)
    return build


# name -> the factory of that model for (one sample's shape, number of classes)
MODELS: dict[str, Callable[[tuple[int, ...], int], Callable[[], nn.Module]]] = {
    "lenet5": _lenet5,
    "resnet-small": _residual(ResNetSmall, "resnet-small"),
    "resnet18": _residual(ResNet18, "resnet18"),
}


def resolve_model(model: str | Callable[[], nn.Module], sample_shape: tuple[int, ...],
                  classes: int) -> Callable[[], nn.Module]:
    """The zero-argument factory every process builds its replica with. A registered name is
    built for the data: its input channels and size from `sample_shape`, its outputs from
    `classes`, so that one name serves MNIST, CIFAR-10 and an image folder alike. A user's
    own factory is taken as it is: it knows the data it was written for."""
    return MODELS[model](tuple(sample_shape), classes) if isinstance(model, str) else model


def build_model(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Instantiate with a seeded initialisation, so that a run's starting weights are
    reproducible and identical wherever they are built."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory()
    if not isinstance(model, nn.Module):
        raise TypeError(f"the model factory returned {type(model).__name__}, not an nn.Module")
    return model

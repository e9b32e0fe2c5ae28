"""Models by name, and the factory resolution that lets any nn.Module factory be trained."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class LeNet5(nn.Module):
    """LeNet-5 as in the reference experiment: 3 convolutions (C1, C3, C5), 2 pooling layers
    (S2, S4), one fully connected layer (F6) and the output layer. 28x28 inputs are padded to the
    classic 32x32 by C1's padding. 61,706 parameters."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # C1, S2
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),                     # C3, S4
            nn.Conv2d(16, 120, 5), nn.ReLU(),                                     # C5
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(120, 84), nn.ReLU(),                          # F6
            nn.Linear(84, num_classes),                                           # output
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = nn.Sequential() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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
        return self.net(x)


MODELS: dict[str, Callable[[], nn.Module]] = {
    "lenet5": LeNet5,
    "resnet18": ResNet18,
}


def resolve_model(model: str | Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    return MODELS[model] if isinstance(model, str) else model


def build_model(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Instantiate with a seeded initialisation, so that a run's starting weights are
    reproducible and identical wherever they are built."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory()
    if not isinstance(model, nn.Module):
        raise TypeError(f"the model factory returned {type(model).__name__}, not an nn.Module")
    return model

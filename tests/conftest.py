import os

import pytest

import hetsync  # noqa: F401  (sets Ray's environment before Ray is imported)

SHARED_MNIST = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets", "mnist")


@pytest.fixture
def small():
    """A run of a few seconds: synthetic data that LeNet-5 learns to 1.0 within 300
    iterations at these settings."""
    return dict(dataset="synthetic", synthetic_samples=1024, batch_size=32, iterations=300,
                eval_every=60, allocation="uniform", progress=False)


@pytest.fixture
def mnist_dir():
    if not os.path.exists(os.path.join(SHARED_MNIST, "t10k-images-idx3-ubyte.gz")):
        pytest.skip("shared MNIST test set not present")
    return SHARED_MNIST


def learnable_images(n: int, shape=(1, 28, 28), classes: int = 10, seed: int = 0):
    """uint8 images (N, C, H, W) and labels that a small network learns in a few hundred
    iterations: the synthetic dataset's class templates and noise, as pixels."""
    import numpy as np

    from hetsync.data import synthetic

    d = synthetic(n, seed=seed, classes=classes, shape=shape)
    return np.clip(128 + 40 * d.x, 0, 255).astype(np.uint8), d.y.astype(np.uint8)


@pytest.fixture
def images():
    return learnable_images


def write_cifar10(folder, images, per_batch=100, seed=0):
    """The six CIFAR-10 batch files, in the real format, of `per_batch` learnable records
    each (`images` is `learnable_images`)."""
    from hetsync.data import CIFAR10_TEST, CIFAR10_TRAIN, write_cifar_batch

    folder.mkdir(parents=True, exist_ok=True)
    x, y = images(6 * per_batch, shape=(3, 32, 32), seed=seed)
    for i, name in enumerate([*CIFAR10_TRAIN, CIFAR10_TEST]):
        part = slice(i * per_batch, (i + 1) * per_batch)
        write_cifar_batch(folder / name, x[part], y[part])

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

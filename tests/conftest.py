import os

import pytest

import hetsync  # noqa: F401  (sets Ray's environment before Ray is imported)

SHARED_MNIST = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets", "mnist")


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for all integration tests: starting Ray costs seconds."""
    from hetsync.runtime import ray_session

    with ray_session(None, cpus=4):
        yield


@pytest.fixture
def mnist_dir():
    if not os.path.exists(os.path.join(SHARED_MNIST, "t10k-images-idx3-ubyte.gz")):
        pytest.skip("shared MNIST test set not present")
    return SHARED_MNIST

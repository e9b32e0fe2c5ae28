"""MNIST: the four official files (downloaded from the mirrors and checksummed where
missing), and mnist-10k, the official test file split for offline work."""

from __future__ import annotations

from pathlib import Path

from hetsync.data.arrays import SPLIT_SEED, ArrayData, holdout
from hetsync.data.files import download_verified, md5_of, require_dir
from hetsync.data.idx import load_idx_pair
from hetsync.errors import DataError

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
MNIST_FILES = {  # name -> md5 of the gzip file, as published with the dataset
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MNIST_10K_SPLIT_SEED = SPLIT_SEED  # fixed: the split must not move with --seed
MNIST_10K_TRAIN = 8000


def _find(data_dir: Path, name: str) -> Path | None:
    """The gzip file, or its decompressed twin (whose checksum we cannot verify, only parse)."""
    for candidate in (data_dir / name, data_dir / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def download_mnist_file(data_dir: Path, name: str, timeout_s: float = 30.0) -> Path:
    """Fetch one MNIST file from the mirrors, verify its md5, and move it into place atomically."""
    return download_verified([mirror + name for mirror in MNIST_MIRRORS], data_dir / name,
                             MNIST_FILES[name], "copy the MNIST files there by hand", timeout_s)


def mnist_file(data_dir: Path, name: str, download: bool) -> Path:
    """Where one MNIST file is: found (a gzip file is checked against its md5), or fetched
    when `download` is allowed; missing otherwise, one line naming it."""
    found = _find(data_dir, name)
    if found is not None:
        if found.suffix == ".gz" and md5_of(found) != MNIST_FILES[name]:
            raise DataError(f"{found} fails its checksum (md5 differs from the published one): "
                            "the file is corrupt or not the official one")
        return found
    if not download:
        raise DataError(f"{name} (or its uncompressed form) is missing from {data_dir}")
    return download_mnist_file(data_dir, name)


def load_mnist(data_dir: str | None) -> tuple[ArrayData, ArrayData]:
    """The standard 60,000 / 10,000 split; missing files are downloaded and checksummed."""
    d = require_dir(data_dir, "mnist", "the MNIST files", may_create=True)
    get = lambda n: mnist_file(d, n, download=True)  # noqa: E731
    train = load_idx_pair(get("train-images-idx3-ubyte.gz"), get("train-labels-idx1-ubyte.gz"))
    test = load_idx_pair(get("t10k-images-idx3-ubyte.gz"), get("t10k-labels-idx1-ubyte.gz"))
    return train, test


def load_mnist_10k(data_dir: str | None) -> tuple[ArrayData, ArrayData]:
    """The official 10,000-image test file split 8,000 / 2,000 by a fixed permutation: real
    images for offline work. Only the two t10k files are read; nothing is downloaded."""
    d = require_dir(data_dir, "mnist-10k", "the MNIST files")
    get = lambda n: mnist_file(d, n, download=False)  # noqa: E731
    full = load_idx_pair(get("t10k-images-idx3-ubyte.gz"), get("t10k-labels-idx1-ubyte.gz"))
    train, val = holdout(len(full), 1 - MNIST_10K_TRAIN / len(full))
    return full.subset(train), full.subset(val)

"""Datasets: IDX parsing, MNIST (with checksummed download), the offline mnist-10k split,
synthetic data for tests, and the conversion of any map-style Dataset into arrays.

Everything a worker trains on is an `ArrayData` (float32 inputs, int64 labels): it travels
through Ray's object store once, zero-copy, and a worker's shard is a list of indices into it,
so moving work between workers never moves pixels.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hetsync.errors import DataError

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
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
IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC = 2051, 2049
MNIST_10K_SPLIT_SEED = 20_231_121  # fixed: the split must not move with --seed
MNIST_10K_TRAIN = 8000


@dataclass
class ArrayData:
    x: np.ndarray  # float32, (N, C, H, W) or (N, features)
    y: np.ndarray  # int64, (N,)

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise DataError(f"{len(self.x)} inputs but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: np.ndarray) -> ArrayData:
        return ArrayData(self.x[idx], self.y[idx])

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The samples at `idx` as (inputs, labels) tensors for the model. Indexing by an
        array copies, so the tensors are writable even where the arrays came read-only
        through Ray."""
        return torch.from_numpy(self.x[idx]), torch.from_numpy(self.y[idx])


# --------------------------------------------------------------------------- IDX files
def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from e
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(f"{path} is not a valid gzip file ({e})") from e
    return raw


def read_idx(path: str | os.PathLike, expect_magic: int) -> np.ndarray:
    """Parse an IDX file (optionally gzipped) of unsigned bytes, checking magic and size."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 8:
        raise DataError(f"{path} is truncated: {len(raw)} bytes is too short for an IDX header")
    (magic,) = struct.unpack(">i", raw[:4])
    if magic != expect_magic:
        raise DataError(f"{path} has magic number {magic}, expected {expect_magic}: "
                        "not an IDX file of this kind")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated inside its header")
    dims = struct.unpack(f">{ndim}i", raw[4:header])
    expected = int(np.prod(dims))
    found = len(raw) - header
    if found < expected:
        raise DataError(f"{path} is truncated: header promises {expected} bytes of data, "
                        f"file holds {found}")
    if found > expected:
        raise DataError(f"{path} has the wrong size: {found - expected} bytes beyond what its "
                        f"header {dims} describes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_idx_pair(images: Path, labels: Path, num_classes: int = 10) -> ArrayData:
    """Images and labels as normalised float32 (N, 1, H, W) and int64 (N,)."""
    img = read_idx(images, IDX_IMAGES_MAGIC)
    lab = read_idx(labels, IDX_LABELS_MAGIC)
    if len(img) != len(lab):
        raise DataError(f"{images.name} holds {len(img)} images but {labels.name} holds "
                        f"{len(lab)} labels")
    if len(lab) and int(lab.max()) >= num_classes:
        raise DataError(f"{labels} has label {int(lab.max())}, outside 0..{num_classes - 1}")
    x = (img.astype(np.float32) / 255.0 - MNIST_MEAN) / MNIST_STD
    return ArrayData(x[:, None, :, :], lab.astype(np.int64))


# --------------------------------------------------------------------------- MNIST files
def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _find(data_dir: Path, name: str) -> Path | None:
    """The gzip file, or its decompressed twin (whose checksum we cannot verify, only parse)."""
    for candidate in (data_dir / name, data_dir / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def download_mnist_file(data_dir: Path, name: str, timeout_s: float = 30.0) -> Path:
    """Fetch one MNIST file from the mirrors, verify its md5, and move it into place atomically."""
    data_dir.mkdir(parents=True, exist_ok=True)
    target = data_dir / name
    errors = []
    for mirror in MNIST_MIRRORS:
        tmp = target.with_suffix(".part")
        try:
            with urllib.request.urlopen(mirror + name, timeout=timeout_s) as r, open(tmp, "wb") as f:
                f.write(r.read())
            if _md5(tmp) != MNIST_FILES[name]:
                errors.append(f"{mirror}: checksum mismatch")
                continue
            os.replace(tmp, target)
            return target
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            errors.append(f"{mirror}: {getattr(e, 'reason', e)}")
        finally:
            tmp.unlink(missing_ok=True)
    raise DataError(f"{name} is not in {data_dir} and could not be downloaded "
                    f"({'; '.join(errors)}); copy the MNIST files there by hand")


def mnist_file(data_dir: Path, name: str, download: bool) -> Path:
    found = _find(data_dir, name)
    if found is not None:
        if found.suffix == ".gz" and _md5(found) != MNIST_FILES[name]:
            raise DataError(f"{found} fails its checksum (md5 differs from the published one): "
                            "the file is corrupt or not the official one")
        return found
    if not download:
        raise DataError(f"{name} (or its uncompressed form) is missing from {data_dir}")
    return download_mnist_file(data_dir, name)


def _require_dir(data_dir: str | None, dataset: str, may_create: bool = False) -> Path:
    if not data_dir:
        raise DataError(f"dataset {dataset!r} needs --data-dir (the folder with the MNIST files)")
    path = Path(data_dir)
    if not path.exists() and not may_create:
        raise DataError(f"data directory {path} does not exist")
    if path.exists() and not path.is_dir():
        raise DataError(f"--data-dir {path} is not a directory")
    return path


def load_mnist(data_dir: str | None) -> tuple[ArrayData, ArrayData]:
    """The standard 60,000 / 10,000 split; missing files are downloaded and checksummed."""
    d = _require_dir(data_dir, "mnist", may_create=True)
    get = lambda n: mnist_file(d, n, download=True)  # noqa: E731
    train = load_idx_pair(get("train-images-idx3-ubyte.gz"), get("train-labels-idx1-ubyte.gz"))
    test = load_idx_pair(get("t10k-images-idx3-ubyte.gz"), get("t10k-labels-idx1-ubyte.gz"))
    return train, test


def load_mnist_10k(data_dir: str | None) -> tuple[ArrayData, ArrayData]:
    """The official 10,000-image test file split 8,000 / 2,000 by a fixed permutation: real
    images for offline work. Only the two t10k files are read; nothing is downloaded."""
    d = _require_dir(data_dir, "mnist-10k")
    get = lambda n: mnist_file(d, n, download=False)  # noqa: E731
    full = load_idx_pair(get("t10k-images-idx3-ubyte.gz"), get("t10k-labels-idx1-ubyte.gz"))
    perm = np.random.default_rng(MNIST_10K_SPLIT_SEED).permutation(len(full))
    return full.subset(perm[:MNIST_10K_TRAIN]), full.subset(perm[MNIST_10K_TRAIN:])


def synthetic(samples: int = 4096, seed: int = 0, classes: int = 10,
              shape: tuple[int, int, int] = (1, 28, 28), noise: float = 0.5) -> ArrayData:
    """Learnable image data: each class is a fixed smooth random template (a 7x7 pattern
    upsampled 4x, so that convolutions and pooling see structure) plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    coarse = rng.standard_normal((classes, c, -(-h // 4), -(-w // 4))).astype(np.float32)
    templates = np.kron(coarse, np.ones((1, 1, 4, 4), np.float32))[:, :, :h, :w]
    y = rng.integers(0, classes, samples)
    x = templates[y] + noise * rng.standard_normal((samples, *shape)).astype(np.float32)
    return ArrayData(x.astype(np.float32), y.astype(np.int64))


def load_synthetic(samples: int = 4096, seed: int = 0) -> tuple[ArrayData, ArrayData]:
    """`samples` training and a fifth as many validation samples; `seed` draws the data
    (seed 0 draws the set that the tests' measured figures were taken on)."""
    val = max(1, samples // 5)
    full = synthetic(samples + val, seed=1234 + seed)
    return full.subset(np.arange(samples)), full.subset(np.arange(samples, samples + val))


# name -> loader of (train, validation), given the data section and the run's seed
DATASETS: dict[str, Callable[..., tuple[ArrayData, ArrayData]]] = {
    "mnist": lambda d, seed: load_mnist(d.data_dir),
    "mnist-10k": lambda d, seed: load_mnist_10k(d.data_dir),
    "synthetic": lambda d, seed: load_synthetic(d.synthetic_samples, seed),
}


def from_torch(dataset) -> ArrayData:
    """Materialise a map-style Dataset of (input tensor, int label) into arrays, once."""
    import torch

    n = len(dataset)
    if n == 0:
        raise DataError("the dataset is empty")
    try:
        items = [dataset[i] for i in range(n)]
        x = torch.stack([torch.as_tensor(item[0], dtype=torch.float32) for item in items])
        y = torch.as_tensor([int(item[1]) for item in items], dtype=torch.int64)
    except (TypeError, ValueError, IndexError, RuntimeError) as e:
        raise DataError(f"the dataset must yield (tensor, integer label) pairs of one shape: {e}") from e
    if int(y.min()) < 0:
        raise DataError(f"the dataset has negative label {int(y.min())}")
    return ArrayData(x.numpy(), y.numpy())


def load_dataset(cfg) -> tuple[ArrayData, ArrayData]:
    """(train, validation) for a `TrainConfig`: a registered name or user Dataset objects."""
    d, seed = cfg.data, cfg.training.seed
    if isinstance(d.dataset, str):
        return DATASETS[d.dataset](d, seed)
    train = from_torch(d.dataset)
    if d.val_dataset is not None:
        return train, from_torch(d.val_dataset)
    perm = np.random.default_rng(seed).permutation(len(train))
    n_val = max(1, len(train) // 10)
    return train.subset(perm[n_val:]), train.subset(perm[:n_val])

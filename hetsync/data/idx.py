"""IDX files, the format MNIST and several data sets like it are distributed in: a big-endian
header (magic number, dimensions) followed by unsigned bytes."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from hetsync.data.arrays import ArrayData
from hetsync.data.files import read_bytes
from hetsync.errors import DataError

IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC = 2051, 2049
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def read_idx(path: str | os.PathLike, expect_magic: int) -> np.ndarray:
    """Parse an IDX file (optionally gzipped) of unsigned bytes, checking magic and size."""
    path = Path(path)
    raw = read_bytes(path)
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
    return ArrayData(x[:, None, :, :], lab.astype(np.int64), num_classes,
                     {"mean": [MNIST_MEAN], "std": [MNIST_STD]})

"""IDX files, the format MNIST and several data sets like it (Fashion-MNIST, KMNIST, EMNIST)
are distributed in: a big-endian header (magic number, dimensions) followed by unsigned
bytes. `--dataset idx` reads any folder of them."""

from __future__ import annotations

import fnmatch
import os
import struct
from pathlib import Path

import numpy as np

from hetsync.data.arrays import ArrayData, holdout, image_split, normalise
from hetsync.data.files import read_bytes, require_dir
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


def read_idx_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    """An images file and its labels file as uint8 (N, 1, H, W) and (N,), of equal count."""
    img = read_idx(images, IDX_IMAGES_MAGIC)
    lab = read_idx(labels, IDX_LABELS_MAGIC)
    if len(img) != len(lab):
        raise DataError(f"{images.name} holds {len(img)} images but {labels.name} holds "
                        f"{len(lab)} labels")
    return img[:, None, :, :], lab


def load_idx_pair(images: Path, labels: Path, num_classes: int = 10) -> ArrayData:
    """MNIST's images and labels as float32 (N, 1, H, W) normalised by MNIST's published
    mean and deviation, and int64 (N,)."""
    img, lab = read_idx_pair(images, labels)
    if len(lab) and int(lab.max()) >= num_classes:
        raise DataError(f"{labels} has label {int(lab.max())}, outside 0..{num_classes - 1}")
    x = normalise(img, [MNIST_MEAN], [MNIST_STD])
    return ArrayData(x, lab.astype(np.int64), num_classes,
                     {"mean": [MNIST_MEAN], "std": [MNIST_STD]})


# --------------------------------------------------------------------------- a folder of them
# The names data sets in this format use: MNIST, Fashion-MNIST and KMNIST call their test
# files t10k-*, EMNIST calls them *-test-*; all say images and labels.
IDX_PARTS = {"train": ("*train*",), "test": ("*t10k*", "*test*")}


def _matches(data_dir: Path, part: str, kind: str) -> list[Path]:
    """The files of `data_dir` named like `part`'s `kind` (images or labels); a file and its
    gzip twin count once, as the gzip file."""
    found = {}
    for path in sorted(data_dir.iterdir()):
        name = path.name.lower()
        if (not path.is_file() or name.startswith(".") or name.endswith(".part")
                or not any(fnmatch.fnmatch(name, f"{p}{kind}*") for p in IDX_PARTS[part])):
            continue
        stem = name.removesuffix(".gz")
        if stem not in found or name.endswith(".gz"):
            found[stem] = path
    return list(found.values())


def find_idx_pair(data_dir: Path, part: str) -> tuple[Path, Path] | None:
    """The images and labels files of one part (train or test) in `data_dir`, None if it has
    neither; one without the other, or several candidates for one, is refused."""
    images, labels = _matches(data_dir, part, "images"), _matches(data_dir, part, "labels")
    for kind, files in (("images", images), ("labels", labels)):
        if len(files) > 1:
            raise DataError(f"several files in {data_dir} look like the {part} {kind} "
                            f"({', '.join(f.name for f in files)}): keep one set per folder")
    if not images and not labels:
        return None
    if not images or not labels:
        (have,), want = images or labels, "images" if not images else "labels"
        raise DataError(f"{have} has no {want} file beside it (a name like "
                        f"{IDX_PARTS[part][0]}{want}*)")
    return images[0], labels[0]


def load_idx_folder(data_dir: str | None, val_fraction: float) -> tuple[ArrayData, ArrayData]:
    """Any folder of IDX files in MNIST's layout: a train pair and a test (t10k) pair, or just
    one of them, which is then split by a fixed permutation (`val_fraction` held out). The
    classes are the labels found (largest + 1), the normalisation the training part's own."""
    d = require_dir(data_dir, "idx", "the IDX files")
    train, test = find_idx_pair(d, "train"), find_idx_pair(d, "test")
    if train is None and test is None:
        raise DataError(f"{d} holds no IDX files: expected an images and a labels file named "
                        "like train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz] "
                        "(or t10k-...)")
    if train is not None and test is not None:
        (x, y), (vx, vy) = read_idx_pair(*train), read_idx_pair(*test)
    else:
        images, labels = read_idx_pair(*(train or test))
        t, v = holdout(len(labels), val_fraction)
        (x, y), (vx, vy) = (images[t], labels[t]), (images[v], labels[v])
    if x.shape[1:] != vx.shape[1:]:
        raise DataError(f"the training images in {d} are {x.shape[2]}x{x.shape[3]}, the test "
                        f"images {vx.shape[2]}x{vx.shape[3]}")
    classes = int(max(y.max(initial=0), vy.max(initial=0))) + 1
    return image_split((x, y), (vx, vy), classes)

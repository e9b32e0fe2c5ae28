"""CIFAR-10 in its binary version: five training batches and a test batch of fixed-size
records (1 label byte, then 1024 red, 1024 green and 1024 blue pixel bytes of a 32x32 image,
row by row). The binary version, not the Python one: nothing is ever unpickled. Missing
files come from the official archive, checksummed, and are extracted by name only."""

from __future__ import annotations

import os
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from hetsync.data.arrays import ArrayData, image_split
from hetsync.data.files import download_verified, md5_of, read_bytes, require_dir
from hetsync.errors import DataError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_ARCHIVE = "cifar-10-binary.tar.gz"
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"  # as published with the data set
CIFAR10_FOLDER = "cifar-10-batches-bin"  # the archive's folder, where extraction puts the files
CIFAR10_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST = "test_batch.bin"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
CIFAR10_RECORD = 1 + 3 * 32 * 32


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file as uint8 images (N, 3, 32, 32) and labels (N,), refused with one line
    naming the file when its size is not whole records or a label is not 0..9."""
    raw = read_bytes(path)
    if not raw:
        raise DataError(f"{path} is empty: a CIFAR-10 batch holds {CIFAR10_RECORD}-byte records")
    if len(raw) % CIFAR10_RECORD:
        raise DataError(f"{path} has the wrong size: {len(raw)} bytes is not a whole number of "
                        f"{CIFAR10_RECORD}-byte CIFAR-10 records (1 label byte + 3072 pixel "
                        "bytes)")
    records = np.frombuffer(raw, np.uint8).reshape(-1, CIFAR10_RECORD)
    labels = records[:, 0]
    bad = np.flatnonzero(labels > 9)
    if len(bad):
        raise DataError(f"{path} has label {labels[bad[0]]} in record {bad[0]}, outside 0..9: "
                        "not a CIFAR-10 binary batch (CIFAR-100's records have two label bytes)")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def write_cifar_batch(path: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """The inverse of `read_cifar_batch`: uint8 images (N, 3, 32, 32) and labels 0..9 as a
    batch file, to bring one's own 32x32 images to this format (and for tests)."""
    images, labels = np.asarray(images, np.uint8), np.asarray(labels, np.uint8)
    if images.shape[1:] != (3, 32, 32) or len(images) != len(labels):
        raise DataError(f"CIFAR-10 records are (3, 32, 32) images with one label each (got "
                        f"images {images.shape}, {len(labels)} labels)")
    records = np.concatenate([labels[:, None], images.reshape(len(images), -1)], axis=1)
    Path(path).write_bytes(records.tobytes())
    return Path(path)


def extract_cifar10(archive: Path, into: Path) -> None:
    """The six batch files out of the official archive into `into`/cifar-10-batches-bin,
    chosen by their file names and written under those names only: a member's own path
    (`../x`, an absolute path, a link) is never used, so extraction cannot write elsewhere."""
    wanted = {*CIFAR10_TRAIN, CIFAR10_TEST}
    target = into / CIFAR10_FOLDER
    target.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = PurePosixPath(member.name).name
                if not member.isfile() or name not in wanted:
                    continue
                tmp = target / (name + ".part")
                with tar.extractfile(member) as src, open(tmp, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
                os.replace(tmp, target / name)
                wanted.discard(name)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataError(f"{archive} is not a readable tar.gz archive ({e})") from e
    if wanted:
        raise DataError(f"{archive} lacks {', '.join(sorted(wanted))}: not the CIFAR-10 binary "
                        "archive")


def _find(data_dir: Path, name: str) -> Path | None:
    """Where `name` is; something under that name that is not a file is found too, so that
    reading it fails naming it (rather than a download being tried)."""
    for candidate in (data_dir / name, data_dir / CIFAR10_FOLDER / name):
        if candidate.exists():
            return candidate
    return None


def cifar10_files(data_dir: Path) -> list[Path]:
    """The five training batches and the test batch, in `data_dir` or its
    cifar-10-batches-bin folder. Missing ones are extracted from the archive in `data_dir`,
    downloaded first if it is not there; the archive is checked against its md5 either way."""
    names = [*CIFAR10_TRAIN, CIFAR10_TEST]
    if any(_find(data_dir, n) is None for n in names):
        archive = data_dir / CIFAR10_ARCHIVE
        if archive.is_file():
            if md5_of(archive) != CIFAR10_MD5:
                raise DataError(f"{archive} fails its checksum (md5 differs from the published "
                                "one): the file is corrupt or not the official one")
        else:
            missing = [n for n in names if _find(data_dir, n) is None]
            download_verified([CIFAR10_URL], archive, CIFAR10_MD5,
                              f"{', '.join(missing)} missing; copy the six .bin files (or "
                              f"{CIFAR10_ARCHIVE}) there by hand")
        extract_cifar10(archive, data_dir)
    return [_find(data_dir, n) for n in names]  # type: ignore[misc]


def load_cifar10(data_dir: str | None) -> tuple[ArrayData, ArrayData]:
    """The 50,000 training images (the five batches) and the 10,000 test images as
    validation, normalised with the training images' per-channel statistics. As float32
    they take 737 MB, stored once in Ray's object store."""
    d = require_dir(data_dir, "cifar10", "the CIFAR-10 binary files", may_create=True)
    *train_files, test_file = cifar10_files(d)
    batches = [read_cifar_batch(f) for f in train_files]
    train = (np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches]))
    return image_split(train, read_cifar_batch(test_file), len(CIFAR10_CLASSES),
                       {"class_names": list(CIFAR10_CLASSES)})

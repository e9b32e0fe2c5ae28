"""Reading dataset files, and the data directory a dataset is read from."""

from __future__ import annotations

import gzip
from pathlib import Path

from hetsync.errors import DataError


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped if they are gzip; one-line errors naming the file."""
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


def require_dir(data_dir: str | None, dataset: str, holds: str,
                may_create: bool = False) -> Path:
    """--data-dir as a Path, refused with one line when it is missing or not a folder;
    `holds` says what belongs in it (`may_create`: a dataset that downloads may be given a
    folder that does not exist yet)."""
    if not data_dir:
        raise DataError(f"dataset {dataset!r} needs --data-dir (the folder with {holds})")
    path = Path(data_dir)
    if not path.exists() and not may_create:
        raise DataError(f"data directory {path} does not exist")
    if path.exists() and not path.is_dir():
        raise DataError(f"--data-dir {path} is not a directory")
    return path

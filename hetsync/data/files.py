"""Reading dataset files, downloading them with a checksum, and the data directory a dataset
is read from."""

from __future__ import annotations

import gzip
import hashlib
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from hetsync.errors import DataError

CHUNK = 1 << 20


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


def md5_of(path: Path) -> str:
    """The file's md5, read in chunks (a CIFAR-10 archive is 163 MB)."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download_verified(urls: Sequence[str], target: Path, md5: str, hint: str,
             timeout_s: float = 30.0) -> Path:
    """Fetch `target` from the first of `urls` that serves it with the published md5, and
    move it into place atomically: a partial or tampered download never takes the real
    name. When none does, one line names each failure and `hint` (what to do by hand)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    errors = []
    for url in urls:
        print(f"hetsync: downloading {url}", file=sys.stderr)
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as r, open(tmp, "wb") as f:
                while chunk := r.read(CHUNK):
                    f.write(chunk)
            if md5_of(tmp) != md5:
                errors.append(f"{url}: checksum mismatch")
                continue
            os.replace(tmp, target)
            return target
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            errors.append(f"{url}: {getattr(e, 'reason', e)}")
        finally:
            tmp.unlink(missing_ok=True)
    raise DataError(f"{target.name} is not in {target.parent} and could not be downloaded "
                    f"({'; '.join(errors)}); {hint}")

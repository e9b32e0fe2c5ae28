"""IDX parsing of good and bad files."""

import gzip
import struct

import numpy as np
import pytest

from hetsync import data
from hetsync.errors import DataError


def _idx(path, magic, dims, payload=None, gz=False):
    body = struct.pack(">i", magic) + struct.pack(f">{len(dims)}i", *dims)
    body += payload if payload is not None else bytes(int(np.prod(dims)))
    (gzip.open if gz else open)(path, "wb").write(body)
    return path


def test_reads_good_files_plain_and_gzipped(tmp_path):
    pixels = bytes(range(2 * 3 * 3 % 256)) + bytes(2 * 3 * 3 - 18)
    img = _idx(tmp_path / "i.gz", 2051, (2, 3, 3), pixels, gz=True)
    lab = _idx(tmp_path / "l", 2049, (2,), bytes([7, 1]))
    d = data.load_idx_pair(img, lab)
    assert d.x.shape == (2, 1, 3, 3) and d.x.dtype == np.float32
    assert d.y.tolist() == [7, 1]


@pytest.mark.parametrize("case,expect", [
    ("magic", "magic number"),
    ("truncated", "truncated"),
    ("extra", "wrong size"),
    ("header", "truncated"),
])
def test_rejects_bad_idx(tmp_path, case, expect):
    p = tmp_path / "bad"
    if case == "magic":
        _idx(p, 2049, (2, 3, 3))
    elif case == "truncated":
        _idx(p, 2051, (2, 3, 3), bytes(10))
    elif case == "extra":
        _idx(p, 2051, (2, 3, 3), bytes(19))
    else:
        p.write_bytes(b"\x00\x00\x08")
    with pytest.raises(DataError, match=expect):
        data.read_idx(p, 2051)


def test_rejects_corrupt_gzip(tmp_path):
    p = tmp_path / "x.gz"
    p.write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    with pytest.raises(DataError, match="gzip"):
        data.read_idx(p, 2051)


def test_rejects_count_mismatch_and_label_range(tmp_path):
    img = _idx(tmp_path / "i", 2051, (2, 3, 3))
    with pytest.raises(DataError, match="2 images but .* 3 labels"):
        data.load_idx_pair(img, _idx(tmp_path / "l3", 2049, (3,)))
    with pytest.raises(DataError, match="label 12"):
        data.load_idx_pair(img, _idx(tmp_path / "l", 2049, (2,), bytes([1, 12])))


def test_unreadable_data_file(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte").mkdir()  # exists, but cannot be read as a file
    with pytest.raises(DataError, match="cannot read .*t10k-images-idx3-ubyte"):
        data.read_idx(tmp_path / "t10k-images-idx3-ubyte", 2051)

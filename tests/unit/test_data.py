"""IDX parsing of good and bad files, the offline split, and the download path."""

import gzip
import struct
import urllib.request

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


def test_mnist_10k_split_is_deterministic_and_disjoint(mnist_dir):
    a_train, a_val = data.load_mnist_10k(mnist_dir)
    b_train, _ = data.load_mnist_10k(mnist_dir)
    assert len(a_train) == 8000 and len(a_val) == 2000
    np.testing.assert_array_equal(a_train.x, b_train.x)
    assert set(np.bincount(a_val.y).nonzero()[0]) == set(range(10))
    # no image of the validation split is among the training images
    train_images = {row.tobytes() for row in a_train.x}
    assert not any(row.tobytes() in train_images for row in a_val.x)


def test_synthetic_data_follows_the_seed():
    a, _ = data.load_synthetic(64, seed=0)
    b, _ = data.load_synthetic(64, seed=1)
    assert not np.array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.x, data.load_synthetic(64, seed=0)[0].x)


def test_missing_data_dir_and_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        data.load_mnist_10k(str(tmp_path / "nope"))
    with pytest.raises(DataError, match="missing"):
        data.load_mnist_10k(str(tmp_path))
    with pytest.raises(DataError, match="needs --data-dir"):
        data.load_mnist_10k(None)
    (tmp_path / "a-file").write_text("")
    with pytest.raises(DataError, match="is not a directory"):
        data.load_mnist_10k(str(tmp_path / "a-file"))


def test_unreadable_data_file(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte").mkdir()  # exists, but cannot be read as a file
    with pytest.raises(DataError, match="cannot read .*t10k-images-idx3-ubyte"):
        data.read_idx(tmp_path / "t10k-images-idx3-ubyte", 2051)


def test_checksum_mismatch_is_refused(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"not mnist"))
    with pytest.raises(DataError, match="checksum"):
        data.load_mnist_10k(str(tmp_path))


def test_download_failure_is_one_clear_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match="could not be downloaded.*network unreachable"):
        data.load_mnist(str(tmp_path))
    assert not list(tmp_path.glob("*.part"))


def test_download_verifies_checksum(tmp_path, monkeypatch):
    class Response:
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def read(self):
            return b"tampered"

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: Response())
    with pytest.raises(DataError, match="checksum mismatch"):
        data.download_mnist_file(tmp_path, "t10k-labels-idx1-ubyte.gz")
    assert not (tmp_path / "t10k-labels-idx1-ubyte.gz").exists()

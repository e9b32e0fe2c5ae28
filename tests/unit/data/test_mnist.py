"""MNIST: the offline split, missing files and directories, checksums and the download path."""

import gzip
import io
import urllib.request

import numpy as np
import pytest

from hetsync import data
from hetsync.errors import DataError


def test_mnist_10k_split_is_deterministic_and_disjoint(mnist_dir):
    a_train, a_val = data.load_mnist_10k(mnist_dir)
    b_train, _ = data.load_mnist_10k(mnist_dir)
    assert len(a_train) == 8000 and len(a_val) == 2000
    np.testing.assert_array_equal(a_train.x, b_train.x)
    assert set(np.bincount(a_val.y).nonzero()[0]) == set(range(10))
    # no image of the validation split is among the training images
    train_images = {row.tobytes() for row in a_train.x}
    assert not any(row.tobytes() in train_images for row in a_val.x)


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
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: io.BytesIO(b"tampered"))
    with pytest.raises(DataError, match="checksum mismatch"):
        data.download_mnist_file(tmp_path, "t10k-labels-idx1-ubyte.gz")
    assert not (tmp_path / "t10k-labels-idx1-ubyte.gz").exists()

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


# --------------------------------------------------------------------------- --dataset idx
def _pair(folder, prefix, n, labels, size=4, gz=False, seed=0):
    """An images and a labels file named like MNIST's, `prefix` train or t10k."""
    rng = np.random.default_rng(seed)
    folder.mkdir(exist_ok=True)
    suffix = ".gz" if gz else ""
    pixels = rng.integers(0, 256, n * size * size, dtype=np.uint8).tobytes()
    _idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", 2051, (n, size, size), pixels, gz)
    _idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", 2049, (n,), bytes(labels), gz)


def test_idx_folder_with_both_pairs_trains_on_one_and_validates_on_the_other(tmp_path):
    _pair(tmp_path, "train", 30, [i % 3 for i in range(30)], gz=True)
    _pair(tmp_path, "t10k", 10, [4] * 10, seed=1)
    train, val = data.load_idx_folder(str(tmp_path), 0.2)
    assert (len(train), len(val)) == (30, 10) and train.sample_shape == (1, 4, 4)
    assert train.classes == val.classes == 5  # the largest label found, + 1
    # normalised with the training part's own statistics, which summary.json reports
    assert abs(train.x.mean()) < 1e-5 and abs(train.x.std() - 1) < 1e-4
    assert val.info == train.info and train.info["std"][0] != data.MNIST_STD


def test_idx_folder_with_one_pair_splits_it_the_same_way_every_time(tmp_path):
    _pair(tmp_path, "t10k", 50, [i % 10 for i in range(50)])
    train, val = data.load_idx_folder(str(tmp_path), 0.2)
    again, _ = data.load_idx_folder(str(tmp_path), 0.2)
    assert (len(train), len(val)) == (40, 10)
    np.testing.assert_array_equal(train.x, again.x)
    assert len(data.load_idx_folder(str(tmp_path), 0.5)[1]) == 25


def test_idx_folder_finds_other_data_sets_names(tmp_path):
    for part, n in (("train", 12), ("test", 6)):  # EMNIST's names, upper case
        _idx(tmp_path / f"EMNIST-letters-{part}-images-idx3-ubyte", 2051, (n, 3, 3))
        _idx(tmp_path / f"EMNIST-letters-{part}-labels-idx1-ubyte", 2049, (n,), bytes([26] * n))
    (tmp_path / "README.txt").write_text("not data")
    train, val = data.load_idx_folder(str(tmp_path), 0.2)
    assert (len(train), len(val), train.classes) == (12, 6, 27)


def test_idx_split_of_the_mnist_test_file_is_mnist_10k_s_with_its_own_statistics(mnist_dir):
    train, val = data.load_idx_folder(mnist_dir, 0.2)
    ref_train, ref_val = data.load_mnist_10k(mnist_dir)
    np.testing.assert_array_equal(train.y, ref_train.y)
    np.testing.assert_array_equal(val.y, ref_val.y)
    pixels = lambda d: d.x * d.info["std"][0] + d.info["mean"][0]  # noqa: E731
    np.testing.assert_allclose(pixels(train), pixels(ref_train), atol=1e-5)
    raw = pixels(ref_train).astype(np.float64)  # the 8,000 training images, on 0..1
    assert train.info["mean"] == pytest.approx([raw.mean()], abs=1e-6)
    assert train.info["std"] == pytest.approx([raw.std()], abs=1e-6)
    assert train.info["mean"] != [data.MNIST_MEAN]  # not the full MNIST's constants


@pytest.mark.parametrize("case,expect", [
    ("empty", "holds no IDX files: expected an images and a labels file"),
    ("no labels", "train-images-idx3-ubyte has no labels file beside it"),
    ("two sets", "several files in .* look like the train images"),
    ("sizes differ", "the training images in .* are 4x4, the test images 5x5"),
    ("no validation left", "--val-fraction 0.01 of 20 samples leaves no validation samples"),
    ("bad file", "t10k-labels-idx1-ubyte has magic number 2051"),
])
def test_idx_folder_refuses_what_it_cannot_use(tmp_path, case, expect):
    if case == "no labels":
        _idx(tmp_path / "train-images-idx3-ubyte", 2051, (2, 3, 3))
    elif case == "two sets":
        _pair(tmp_path, "train", 4, [0] * 4)
        _idx(tmp_path / "emnist-train-images-idx3-ubyte", 2051, (2, 3, 3))
    elif case == "sizes differ":
        _pair(tmp_path, "train", 4, [0] * 4)
        _pair(tmp_path, "t10k", 4, [0] * 4, size=5)
    elif case == "no validation left":
        _pair(tmp_path, "train", 20, [0] * 20)
    elif case == "bad file":
        _idx(tmp_path / "t10k-images-idx3-ubyte", 2051, (2, 3, 3))
        _idx(tmp_path / "t10k-labels-idx1-ubyte", 2051, (2, 3, 3))
    fraction = 0.01 if case == "no validation left" else 0.2
    with pytest.raises(DataError, match=expect):
        data.load_idx_folder(str(tmp_path), fraction)

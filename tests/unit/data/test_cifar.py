"""CIFAR-10 binary batches: good files, each kind of bad file, the checksummed archive and its
extraction by name only. Every file is written by the test; nothing is downloaded."""

import hashlib
import io
import tarfile
import urllib.request

import numpy as np
import pytest

from hetsync import data
from hetsync.data import cifar
from hetsync.errors import DataError

NAMES = [*data.CIFAR10_TRAIN, data.CIFAR10_TEST]


def _batches(folder, records=4, seed=0):
    """The six files with `records` random records each; returns their images and labels."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in NAMES:
        images = rng.integers(0, 256, (records, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, records, dtype=np.uint8)
        data.write_cifar_batch(folder / name, images, labels)
        written[name] = images, labels
    return written


def test_reads_the_six_batches_as_training_and_validation(tmp_path):
    written = _batches(tmp_path)
    train, val = data.load_cifar10(str(tmp_path))
    assert (len(train), len(val)) == (20, 4) and train.sample_shape == (3, 32, 32)
    assert train.classes == val.classes == 10 and train.info["class_names"][0] == "airplane"
    np.testing.assert_array_equal(val.y, written["test_batch.bin"][1])
    # the record layout: red plane, green plane, blue plane, each row by row
    first = written["data_batch_1.bin"][0][0]
    mean, std = np.array(train.info["mean"]), np.array(train.info["std"])
    restored = (train.x[0] * std[:, None, None] + mean[:, None, None]) * 255
    np.testing.assert_allclose(restored, first, atol=1e-3)
    assert np.abs(train.x.mean(axis=(0, 2, 3))).max() < 1e-4  # the training data's own stats


def test_reads_the_archive_folder_layout(tmp_path):
    _batches(tmp_path / "cifar-10-batches-bin")
    train, _ = data.load_cifar10(str(tmp_path))
    assert len(train) == 20


@pytest.mark.parametrize("case,expect", [
    ("size", r"data_batch_3.bin has the wrong size: 3074 bytes is not a whole number of "
             r"3073-byte CIFAR-10 records"),
    ("empty", "data_batch_3.bin is empty"),
    ("label", "data_batch_3.bin has label 12 in record 1, outside 0..9"),
    ("unreadable", "cannot read .*data_batch_3.bin"),
])
def test_a_bad_batch_is_one_line_naming_the_file(tmp_path, case, expect):
    _batches(tmp_path)
    bad = tmp_path / "data_batch_3.bin"
    if case == "size":
        bad.write_bytes(bad.read_bytes()[:3073] + b"\x00")
    elif case == "empty":
        bad.write_bytes(b"")
    elif case == "label":
        raw = bytearray(bad.read_bytes())
        raw[3073] = 12  # the second record's label byte
        bad.write_bytes(bytes(raw))
    else:
        bad.unlink()
        bad.mkdir()
    with pytest.raises(DataError, match=expect):
        data.load_cifar10(str(tmp_path))


def _archive(folder, extra=()):
    """A tar.gz laid out as the official one, with `extra` (name, TarInfo type) members."""
    _batches(folder / "src")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, kind in extra:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "/etc/hostname"
            tar.addfile(info)
        for name in NAMES:
            tar.add(folder / "src" / name, arcname=f"cifar-10-batches-bin/{name}")
    return buf.getvalue()


def test_missing_files_come_from_the_checksummed_archive_extracted_by_name_only(
        tmp_path, monkeypatch):
    # a member that climbs out of the folder and a link: neither is written anywhere
    blob = _archive(tmp_path, extra=[("../../escaped.bin", tarfile.REGTYPE),
                                     ("cifar-10-batches-bin/test_batch.bin", tarfile.SYMTYPE)])
    monkeypatch.setattr(cifar, "CIFAR10_MD5", hashlib.md5(blob).hexdigest())
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: io.BytesIO(blob))
    train, val = data.load_cifar10(str(tmp_path / "data"))
    assert (len(train), len(val)) == (20, 4)
    extracted = tmp_path / "data" / "cifar-10-batches-bin"
    assert sorted(p.name for p in extracted.iterdir()) == sorted(NAMES)
    assert not any(p.is_symlink() for p in extracted.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "src"]  # nothing escaped
    assert (tmp_path / "data" / data.CIFAR10_ARCHIVE).is_file()  # kept: no second download


def test_a_download_that_fails_or_is_tampered_with_is_one_line(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match="cifar-10-binary.tar.gz is not in .* could not be "
                                        "downloaded .*network unreachable.*copy the six .bin"):
        data.load_cifar10(str(tmp_path))
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: io.BytesIO(b"tampered"))
    with pytest.raises(DataError, match="checksum mismatch"):
        data.load_cifar10(str(tmp_path))
    assert list(tmp_path.iterdir()) == []  # no partial file left under any name


@pytest.mark.parametrize("case,expect", [
    ("tampered", "cifar-10-binary.tar.gz fails its checksum"),
    ("corrupt", "cifar-10-binary.tar.gz is not a readable tar.gz archive"),
    ("incomplete", "cifar-10-binary.tar.gz lacks data_batch_2.bin, .*, test_batch.bin: not "
                   "the CIFAR-10 binary archive"),
])
def test_a_bad_archive_is_one_line(tmp_path, monkeypatch, case, expect):
    archive = tmp_path / data.CIFAR10_ARCHIVE
    if case == "incomplete":
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            info = tarfile.TarInfo("cifar-10-batches-bin/data_batch_1.bin")
            tar.addfile(info, io.BytesIO())
        archive.write_bytes(buf.getvalue())
    else:
        archive.write_bytes(b"\x1f\x8b not really gzip")
    if case != "tampered":
        monkeypatch.setattr(cifar, "CIFAR10_MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    with pytest.raises(DataError, match=expect):
        data.load_cifar10(str(tmp_path))


def test_writing_refuses_what_is_not_a_cifar_record(tmp_path):
    with pytest.raises(DataError, match=r"CIFAR-10 records are \(3, 32, 32\) images"):
        data.write_cifar_batch(tmp_path / "x.bin", np.zeros((2, 1, 28, 28)), [0, 1])

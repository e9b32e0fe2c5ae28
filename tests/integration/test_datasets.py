"""Each file format trains end to end on generated files: IDX (--dataset idx), CIFAR-10
binaries (--dataset cifar10) and an image folder (--dataset folder). The files are written
by the test in the real formats; nothing is downloaded."""

import gzip
import struct

import pytest

import hetsync
from tests.conftest import write_cifar10

pytestmark = pytest.mark.ray
RUN = dict(workers=2, sync="ssp", staleness=2, batch_size=32, iterations=150, eval_every=50,
           progress=False)


def _write_idx(path, magic, array):
    header = struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape)
    path.write_bytes(gzip.compress(header + array.tobytes()))


def test_idx_folder_trains_end_to_end(ray_local, tmp_path, images):
    x, y = images(700, seed=3)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", 2051, x[:, 0])
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2049, y)
    s = hetsync.train(dataset="idx", data_dir=str(tmp_path), **RUN).summary
    assert s["data"]["train_samples"] == 560 and s["data"]["val_samples"] == 140
    assert s["data"]["sample_shape"] == [1, 28, 28] and s["data"]["classes"] == 10
    assert s["final_val_accuracy"] >= 0.95, s["final_val_accuracy"]


def test_cifar10_binaries_train_end_to_end(ray_local, tmp_path, images):
    write_cifar10(tmp_path, images)
    s = hetsync.train(dataset="cifar10", data_dir=str(tmp_path), **RUN).summary
    assert s["data"]["train_samples"] == 500 and s["data"]["val_samples"] == 100
    assert s["data"]["sample_shape"] == [3, 32, 32] and s["data"]["classes"] == 10
    assert s["final_val_accuracy"] >= 0.95, s["final_val_accuracy"]


def test_an_image_folder_trains_end_to_end(ray_local, tmp_path, images):
    from PIL import Image

    x, y = images(500, shape=(3, 24, 24), classes=4, seed=5)
    for i, (pixels, label) in enumerate(zip(x, y, strict=True)):
        folder = tmp_path / f"class-{label}"
        folder.mkdir(exist_ok=True)
        # PNG and (lossy) JPEG, resized from 24 to 28 pixels on reading
        Image.fromarray(pixels.transpose(1, 2, 0)).save(
            folder / f"{i}.{'png' if i % 2 else 'jpg'}", quality=95)
    s = hetsync.train(dataset="folder", data_dir=str(tmp_path), image_size=28, **RUN).summary
    assert s["data"]["train_samples"] == 400 and s["data"]["val_samples"] == 100
    assert s["data"]["sample_shape"] == [3, 28, 28] and s["data"]["classes"] == 4
    assert s["data"]["class_names"] == ["class-0", "class-1", "class-2", "class-3"]
    assert s["final_val_accuracy"] >= 0.95, s["final_val_accuracy"]

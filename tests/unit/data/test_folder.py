"""Image folders: classes from sub-folders, one shape and one colour mode for all images, a
fixed split, and a one-line error for every file or folder that cannot be used."""

import numpy as np
import pytest
from PIL import Image

from hetsync import data
from hetsync.errors import DataError


def _image(path, mode="RGB", size=(20, 12), value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = value if mode in ("L", "I;16") else (value, 255 - value, 7)
    Image.new(mode, size, colour).save(path)
    return path


def _folder(root, classes=("cat", "dog", "emu"), per_class=5, mode="RGB"):
    for label, name in enumerate(classes):
        for i in range(per_class):
            suffix = ".jpg" if i % 2 else ".PNG"  # both formats, any case
            _image(root / name / f"{i}{suffix}", mode, (10 + i, 14), value=40 * label)
    return root


def test_a_folder_per_class_gives_labels_one_shape_and_a_fixed_split(tmp_path):
    _folder(tmp_path)
    _image(tmp_path / "dog" / "grey.png", "L", value=9)  # one grey image among colour ones
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / ".thumbnails").mkdir()  # hidden: not a class
    train, val = data.load_image_folder(str(tmp_path), 16, "auto", 0.25)
    assert (len(train), len(val)) == (12, 4)
    assert train.sample_shape == (3, 16, 16) and train.classes == 3
    assert train.info["class_names"] == ["cat", "dog", "emu"]
    assert train.info["image_mode"] == "rgb"  # auto: not every image is grey
    assert sorted(np.bincount(np.concatenate([train.y, val.y]))) == [5, 5, 6]
    again, _ = data.load_image_folder(str(tmp_path), 16, "auto", 0.25)
    np.testing.assert_array_equal(train.x, again.x)


def test_the_colour_mode_is_taken_from_the_images_or_set(tmp_path):
    _folder(tmp_path, mode="L")
    grey, _ = data.load_image_folder(str(tmp_path), 8, "auto", 0.2)
    assert grey.sample_shape == (1, 8, 8) and grey.info["image_mode"] == "grey"
    rgb, _ = data.load_image_folder(str(tmp_path), 8, "rgb", 0.2)
    assert rgb.sample_shape == (3, 8, 8)
    colour = _folder(tmp_path / "colour")
    as_grey, _ = data.load_image_folder(str(colour), 8, "grey", 0.2)
    assert as_grey.sample_shape == (1, 8, 8)


@pytest.mark.parametrize("case,expect", [
    ("corrupt", r"dog/2.png is not a readable image \(cannot identify image file"),
    ("truncated", r"dog/3.jpg is not a readable image \(Truncated File Read"),
    ("16-bit", r"dog/4.png has more than 8 bits per pixel \(mode I;16\)"),
    ("empty class", r"class folder .*/emu holds no PNG or JPEG images"),
    ("one class", r"has one class folder \(cat\); a classifier needs at least two"),
    ("no classes", r"has no class folders: --dataset folder expects one sub-folder"),
    ("missing", r"data directory .*nowhere does not exist"),
])
def test_a_file_or_folder_that_cannot_be_used_is_one_line_naming_it(tmp_path, case, expect):
    root = tmp_path / "images"
    if case in ("corrupt", "truncated", "16-bit", "empty class"):
        _folder(root, classes=("cat", "dog"))
    if case == "corrupt":
        (root / "dog" / "2.png").write_bytes(b"\x89PNG not really")
    elif case == "truncated":
        jpeg = _image(root / "dog" / "3.jpg", size=(64, 64)).read_bytes()
        (root / "dog" / "3.jpg").write_bytes(jpeg[:len(jpeg) // 2])
    elif case == "16-bit":
        _image(root / "dog" / "4.png", "I;16", value=4000)
    elif case == "empty class":
        (root / "emu").mkdir()
        (root / "emu" / "readme.txt").write_text("no images yet")
    elif case == "one class":
        _folder(root, classes=("cat",))
    elif case == "no classes":
        _image(root / "loose.png")
    elif case == "missing":
        root = tmp_path / "nowhere"
    with pytest.raises(DataError, match=expect):
        data.load_image_folder(str(root), 16, "auto", 0.2)

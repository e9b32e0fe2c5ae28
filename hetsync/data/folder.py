"""An image folder: one sub-folder per class, holding PNG or JPEG images (the layout of
torchvision's ImageFolder), read with Pillow, resized to one square shape, in one colour mode
for all, and split into training and validation parts by a fixed permutation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hetsync.data.arrays import ArrayData, holdout, image_split
from hetsync.data.files import require_dir
from hetsync.errors import DataError

IMAGE_MODES = ("auto", "rgb", "grey")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GREY_MODES = ("1", "L", "LA")  # Pillow's modes without colour
DEEP_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")  # more than 8 bits per pixel


def class_folders(data_dir: Path) -> list[Path]:
    """The class sub-folders, sorted by name: a class's label is its place in this list.
    Hidden folders (.git, .ipynb_checkpoints) are not classes."""
    folders = sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{data_dir} has no class folders: --dataset folder expects one "
                        "sub-folder of PNG or JPEG images per class")
    if len(folders) == 1:
        raise DataError(f"{data_dir} has one class folder ({folders[0].name}); a classifier "
                        "needs at least two")
    return folders


def image_files(folder: Path) -> list[Path]:
    """The PNG and JPEG files of one class folder, its sub-folders included, sorted; other
    files (notes, thumbnails databases) are not images of the class and are passed over."""
    files = sorted(p for p in folder.rglob("*") if p.is_file()
                   and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise DataError(f"class folder {folder} holds no PNG or JPEG images")
    return files


def read_image(path: Path, size: int):
    """One image as a Pillow image of `size` x `size` in mode L (grey) or RGB, whichever holds
    it without loss; a file Pillow cannot decode is one line naming it."""
    from PIL import Image  # here, not at import: `import hetsync` stays light

    try:
        with Image.open(path) as im:
            if im.mode in DEEP_MODES:
                raise DataError(f"{path} has more than 8 bits per pixel (mode {im.mode}); "
                                "convert it to an 8-bit PNG or JPEG")
            im = im.convert("L" if im.mode in GREY_MODES else "RGB")
            return im.resize((size, size), Image.Resampling.BILINEAR)
    except DataError:
        raise
    except Exception as e:  # Pillow's decoders raise many types for a corrupt file
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path} is not a readable image ({reason})") from e


def load_image_folder(data_dir: str | None, image_size: int, image_mode: str,
                      val_fraction: float) -> tuple[ArrayData, ArrayData]:
    """Every image of every class folder, resized to `image_size` square (aspect ratio not
    kept), in one mode: `rgb`, `grey`, or `auto` (grey only if every image is). A fixed
    permutation holds out `val_fraction`; normalised with the training part's statistics."""
    d = require_dir(data_dir, "folder", "one sub-folder of images per class")
    folders = class_folders(d)
    files = [(path, label) for label, folder in enumerate(folders)
             for path in image_files(folder)]
    images = [read_image(path, image_size) for path, _ in files]
    if image_mode == "auto":
        image_mode = "grey" if all(im.mode == "L" for im in images) else "rgb"
    mode = "L" if image_mode == "grey" else "RGB"
    pixels = np.stack([np.asarray(im if im.mode == mode else im.convert(mode)) for im in images])
    x = pixels[:, None] if mode == "L" else pixels.transpose(0, 3, 1, 2)  # (N, C, H, W)
    y = np.array([label for _, label in files], np.int64)
    train, val = holdout(len(y), val_fraction)
    return image_split((x[train], y[train]), (x[val], y[val]), len(folders),
                       {"class_names": [f.name for f in folders], "image_mode": image_mode})

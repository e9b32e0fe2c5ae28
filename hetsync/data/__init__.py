"""Datasets, one module per format: `arrays` (ArrayData, what every dataset becomes, and any
map-style Dataset converted to it), `files` (reading files, checksummed downloads, the data
directory), `idx` (IDX parsing, and any folder of IDX files), `cifar` (CIFAR-10's binary
batches), `folder` (a folder of PNG and JPEG images, one sub-folder per class), `mnist` (MNIST with checksummed download, the offline mnist-10k split),
`synthetic` (generated data for tests) and `registry` (datasets by name, a run's train and
validation pair). The names below are the package's public ones."""

from hetsync.data.arrays import (
    SPLIT_SEED,
    ArrayData,
    from_torch,
    holdout,
    image_split,
    normalise,
    pixel_statistics,
)
from hetsync.data.cifar import (
    CIFAR10_ARCHIVE,
    CIFAR10_CLASSES,
    CIFAR10_MD5,
    CIFAR10_TEST,
    CIFAR10_TRAIN,
    CIFAR10_URL,
    cifar10_files,
    extract_cifar10,
    load_cifar10,
    read_cifar_batch,
    write_cifar_batch,
)
from hetsync.data.files import download_verified, md5_of, read_bytes, require_dir
from hetsync.data.folder import (
    IMAGE_MODES,
    IMAGE_SUFFIXES,
    class_folders,
    image_files,
    load_image_folder,
    read_image,
)
from hetsync.data.idx import (
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    MNIST_MEAN,
    MNIST_STD,
    find_idx_pair,
    load_idx_folder,
    load_idx_pair,
    read_idx,
    read_idx_pair,
)
from hetsync.data.mnist import (
    MNIST_10K_SPLIT_SEED,
    MNIST_10K_TRAIN,
    MNIST_FILES,
    MNIST_MIRRORS,
    download_mnist_file,
    load_mnist,
    load_mnist_10k,
    mnist_file,
)
from hetsync.data.registry import DATASETS, load_dataset
from hetsync.data.synthetic import load_synthetic, synthetic

__all__ = [
    "SPLIT_SEED", "ArrayData", "from_torch", "holdout", "image_split", "normalise",
    "pixel_statistics", "find_idx_pair", "load_idx_folder", "read_idx_pair", "CIFAR10_ARCHIVE", "CIFAR10_CLASSES", "CIFAR10_MD5",
    "CIFAR10_TEST", "CIFAR10_TRAIN", "CIFAR10_URL", "cifar10_files", "extract_cifar10",
    "load_cifar10", "read_cifar_batch", "write_cifar_batch", "download_verified", "md5_of",
    "IMAGE_MODES", "IMAGE_SUFFIXES", "class_folders", "image_files", "load_image_folder",
    "read_image",
    "read_bytes", "require_dir", "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC", "MNIST_MEAN", "MNIST_STD", "load_idx_pair", "read_idx",
    "MNIST_10K_SPLIT_SEED", "MNIST_10K_TRAIN", "MNIST_FILES", "MNIST_MIRRORS",
    "download_mnist_file", "load_mnist", "load_mnist_10k", "mnist_file", "DATASETS",
    "load_dataset", "load_synthetic", "synthetic",
]

"""Reading Fashion-MNIST's IDX files (no Django imports: ml/ and bench/ use this too)."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
SPLIT_PREFIX = {"train": "train", "test": "t10k"}


class DatasetNotFound(FileNotFoundError):
    pass


def dataset_dir(path: str | os.PathLike | None = None) -> Path:
    return Path(path or os.environ.get("FASHION_MNIST_DIR") or DEFAULT_DIR)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        zero, dtype_code, ndim = struct.unpack(">HBB", f.read(4))
        if zero != 0 or dtype_code != 0x08:
            raise ValueError(f"{path} is not an unsigned-byte IDX file")
        shape = struct.unpack(f">{ndim}I", f.read(4 * ndim))
        return np.frombuffer(f.read(), dtype=np.uint8).reshape(shape)


def _find(directory: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (directory / name).exists():
            return directory / name
    return None


def load_split(split: str, path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 [N, 28, 28], labels uint8 [N]) for 'train' or 'test'.

    Reads the IDX files of Debian's `dataset-fashion-mnist` package (or FASHION_MNIST_DIR); where they
    are missing and the machine has internet, falls back to Keras' downloader.
    """
    if split not in SPLIT_PREFIX:
        raise ValueError(f"split must be 'train' or 'test'. Received: split={split!r}")
    directory = dataset_dir(path)
    prefix = SPLIT_PREFIX[split]
    images_file = _find(directory, f"{prefix}-images-idx3-ubyte")
    labels_file = _find(directory, f"{prefix}-labels-idx1-ubyte")
    if images_file and labels_file:
        return _read_idx(images_file), _read_idx(labels_file)
    try:
        from keras.datasets import fashion_mnist

        (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()
    except Exception as exc:  # no internet, or Keras missing
        raise DatasetNotFound(
            f"Fashion-MNIST not found in {directory} and Keras could not download it ({exc}). "
            "Install Debian's package (`apt-get install dataset-fashion-mnist`) or point "
            "FASHION_MNIST_DIR / --dir at a folder holding the four IDX files."
        ) from exc
    return (x_train, y_train) if split == "train" else (x_test, y_test)

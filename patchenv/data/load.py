"""``load_dataset(name)``: one data set by name, onto the CPU."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

from patchenv.data import cifar10, digits, fashion_mnist, generated, imagenette
from patchenv.data.images import ImageData, channel_stats, resize

DATASETS = ("cifar10", "fashion_mnist", "imagenette", "digits", "synthetic")


def default_data_root() -> Path:
    return Path(os.environ.get("PATCHENV_DATA", Path.home() / ".cache" / "patchenv"))


def load_dataset(name: str, data_root=None, download: bool = False, seed: int = 0,
                 channels: int = 3, image_size: Optional[int] = None) -> ImageData:
    """Load a data set by name onto the CPU. `seed` only matters for ``synthetic``,
    `channels` (1 or 3) only for the grey sets (fashion_mnist, digits, synthetic).

    `image_size`: the side S of the square images; None = the set's own (32 for cifar10,
    fashion_mnist (28 padded to 32), digits and synthetic; 64 for imagenette). cifar10 and
    fashion_mnist are resized from their 32x32 (bilinear, antialiased), digits from its
    8x8, synthetic is generated at S, imagenette is resized from its files."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    if image_size is not None and not (isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool)
                                       and image_size > 0):
        raise ValueError(f"image_size must be a positive integer or None, got {image_size!r}")
    root = Path(data_root) if data_root is not None else default_data_root()
    if name == "imagenette":
        return imagenette.load(root, download, int(image_size or imagenette.IMAGENETTE_IMAGE_SIZE))
    size = int(image_size or 32)
    if name == "digits":
        return digits.load(channels, size)
    if name == "synthetic":
        return generated.synthetic(seed=seed, channels=channels, image_size=size)
    images = cifar10.load(root, download) if name == "cifar10" else fashion_mnist.load(root, download, channels)
    if size == images.image_size:
        return images
    train_x, test_x = resize(images.train_x, size), resize(images.test_x, size)
    mean, std = (images.mean, images.std) if name == "cifar10" else channel_stats(train_x)
    return ImageData(images.name, train_x, images.train_y, test_x, images.test_y, images.num_classes, mean, std)

"""Fashion-MNIST: the paper's second data set. Read offline from Debian's
``dataset-fashion-mnist`` files when present, else from torchvision's folder (``download=True``
fetches it); 28x28 is zero-padded to 32x32."""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from patchenv.data.images import (DatasetCorruptError, DatasetNotFoundError, ImageData, channel_stats, download_into,
                                  root_problem)

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
_FMNIST_FILES = {
    "train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte",
}


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not; errors name the file."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
        magic = int.from_bytes(raw[:4], "big")
        ndim = magic & 0xFF
        if magic >> 8 != 0x08 or ndim not in (1, 3):
            raise ValueError(f"bad magic number {magic:#x}")
        dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
        data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
        return data.reshape(dims)
    except (OSError, EOFError, ValueError, zlib.error) as e:  # zlib.error: a damaged gzip stream
        raise DatasetCorruptError(f"Fashion-MNIST file {path} is corrupt or truncated ({e})") from None


def _find_fashion_mnist(root: Path):
    for folder in (DEBIAN_FASHION_MNIST, root / "FashionMNIST" / "raw"):
        found = {}
        for key, stem in _FMNIST_FILES.items():
            for candidate in (folder / (stem + ".gz"), folder / stem):
                if candidate.is_file():
                    found[key] = candidate
                    break
        if len(found) == 4:
            return found
    return None


def load(root: Path, download: bool, channels: int) -> ImageData:
    files = _find_fashion_mnist(root)
    if files is None:
        if not download:
            raise DatasetNotFoundError(
                f"Fashion-MNIST not found in {DEBIAN_FASHION_MNIST} or {root / 'FashionMNIST' / 'raw'}"
                f"{root_problem(root)}. Install it offline with `apt-get install dataset-fashion-mnist`, or pass "
                f"download=True (CLI: --download) to fetch it with torchvision."
            )
        from torchvision.datasets import FashionMNIST
        download_into("fashion_mnist", root, lambda: [FashionMNIST(str(root), train=train, download=True)
                                                  for train in (True, False)])
        files = _find_fashion_mnist(root)
        if files is None:
            raise DatasetNotFoundError(f"Fashion-MNIST is still missing under {root / 'FashionMNIST' / 'raw'} after "
                                       f"the download")
    arrays = {k: _read_idx(p) for k, p in files.items()}
    for split in ("train", "test"):  # well-formed IDX files can still disagree with each other
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise DatasetCorruptError(f"Fashion-MNIST file {files[f'{split}_x']} should hold 28x28 images, got shape {x.shape}")
        if y.shape != (len(x),) or (y.size and y.max() > 9):
            raise DatasetCorruptError(f"Fashion-MNIST file {files[f'{split}_y']} should hold {len(x)} labels in [0, 9], "
                               f"got shape {y.shape}")

    def images(a):  # (n, 28, 28) -> (n, C, 32, 32), zero-padded like the dark background
        x = F.pad(torch.from_numpy(a.copy()).unsqueeze(1), (2, 2, 2, 2))
        return x.expand(-1, channels, -1, -1).contiguous()

    train_x, test_x = images(arrays["train_x"]), images(arrays["test_x"])
    mean, std = channel_stats(train_x)
    return ImageData("fashion_mnist", train_x, torch.from_numpy(arrays["train_y"].astype(np.int64)),
                     test_x, torch.from_numpy(arrays["test_y"].astype(np.int64)), 10, mean, std)


"""What every data source returns (`ImageData`), the errors it raises, and the helpers
the sources share: the data folder, torchvision downloads, resizing, channel statistics."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

# The paper's CIFAR-10 normalisation (docs/AGENTVIT.md); other sets use their own statistics.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)


class DatasetError(RuntimeError):
    """A data set is missing or its files are unreadable; the message says what to do."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The data set is not on disk and downloading was not allowed."""


class DatasetCorruptError(DatasetError, ValueError):
    """A data file exists but cannot be read as what it should hold; names the file."""


@dataclass
class ImageData:
    """One split-pair of a data set, as uint8 (n, C, H, W) images and int64 labels."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple
    std: tuple

    @property
    def channels(self) -> int:
        return self.train_x.shape[1]

    @property
    def image_size(self) -> int:
        return self.train_x.shape[-1]

    def to(self, device) -> "ImageData":
        return ImageData(self.name, self.train_x.to(device), self.train_y.to(device),
                         self.test_x.to(device), self.test_y.to(device),
                         self.num_classes, self.mean, self.std)


def resize(x: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """uint8 (n, C, H, W) -> uint8 (n, C, size, size), bilinear (antialiased when
    shrinking), in chunks so the float copy stays small."""
    out = torch.empty(len(x), x.shape[1], size, size, dtype=torch.uint8)
    for i in range(0, len(x), chunk):
        xf = F.interpolate(x[i:i + chunk].float(), size=(size, size), mode="bilinear", align_corners=False,
                           antialias=size < x.shape[-1])
        out[i:i + chunk] = xf.round_().clamp_(0, 255).to(torch.uint8)
    return out


def root_problem(root: Path) -> str:
    """Why `root` cannot be a data folder (", ..." to append to a message), or ""."""
    if root.exists() and not root.is_dir():
        return f"; the data root {root} is a file, not a folder"
    blocker = next((p for p in root.parents if p.exists()), None)
    if not root.exists() and blocker is not None and not blocker.is_dir():
        return f"; the data root {root} cannot exist: {blocker} is a file"
    return ""


def download_into(name: str, root: Path, fetch: Callable[[], Any]) -> None:
    """Run torchvision's `fetch` of data set `name` into `root`, after checking that `root`
    is a folder this process can write (before any network traffic); every failure is a
    DatasetError naming the folder and the cause."""
    problem = root_problem(root)
    if problem:
        raise DatasetError(f"cannot download {name}{problem}; pass a writable folder as data_root (CLI: --data-root)")
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root):  # a read-only folder or file system fails here
            pass
    except OSError as e:
        raise DatasetError(f"cannot download {name} into {root}: it is not writable ({e.strerror or e}); pass a "
                           f"writable folder as data_root (CLI: --data-root)") from None
    try:
        fetch()
    except Exception as e:  # no network (URLError), a full disk, a checksum mismatch, a bad archive, ...
        reason = str(e).splitlines()[0] if str(e) else ""
        raise DatasetError(f"downloading {name} into {root} failed ({type(e).__name__}: {reason}); check the "
                           f"network and the free space, or put the files there yourself") from None



def channel_stats(x, chunk: int = 256) -> tuple[tuple, tuple]:
    """Per-channel mean and std (unbiased, at least 1e-3) of uint8 (n, C, H, W) images
    (a numpy array or a CPU tensor) scaled to [0, 1], as tuples of floats. Summed in
    float64 a chunk at a time: the whole set as floats would not be small (Fashion-MNIST's
    training split is 184M values)."""
    x = x.numpy() if isinstance(x, torch.Tensor) else x
    total, total_sq = np.zeros(x.shape[1]), np.zeros(x.shape[1])
    for i in range(0, len(x), chunk):
        xf = x[i:i + chunk].astype(np.float64) / 255
        total += xf.sum(axis=(0, 2, 3))
        total_sq += (xf * xf).sum(axis=(0, 2, 3))
    n = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / n
    var = (total_sq - n * mean * mean) / max(n - 1, 1)
    std = np.sqrt(np.maximum(var, 0)).clip(min=1e-3)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


"""CIFAR-10: the paper's first data set, read from torchvision's on-disk batches
(``cifar-10-batches-py/``; ``download=True`` fetches them through torchvision)."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from patchenv.data.images import (CIFAR10_MEAN, CIFAR10_STD, DatasetCorruptError, DatasetError, DatasetNotFoundError,
                                  ImageData, download_into, root_problem)

_CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
_CIFAR10_TEST = ["test_batch"]


def load(root: Path, download: bool) -> ImageData:
    folder = root / "cifar-10-batches-py"
    missing = [f for f in _CIFAR10_TRAIN + _CIFAR10_TEST if not (folder / f).is_file()]
    if missing and download:
        try:
            from torchvision.datasets import CIFAR10
        except ImportError as e:  # pragma: no cover
            raise DatasetError("downloading cifar10 needs torchvision: pip install torchvision") from e
        # fetches the archive and checks its md5
        download_into("cifar10", root, lambda: CIFAR10(str(root), train=True, download=True))
        missing = [f for f in _CIFAR10_TRAIN + _CIFAR10_TEST if not (folder / f).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"CIFAR-10 not found under {folder} (missing {', '.join(missing)}{root_problem(root)}). Pass "
            f"download=True (CLI: --download) to fetch it, or point data_root at a folder holding cifar-10-batches-py/."
        )
    # The batch files are read here rather than by torchvision's CIFAR10 class: it insists
    # on the archive's md5 sums (also for batches.meta, whose class names we never use),
    # rejects files re-saved from Python 3 (bytes keys) and reports a corrupt file without
    # naming it.
    splits = []
    for files in (_CIFAR10_TRAIN, _CIFAR10_TEST):
        xs, ys = zip(*(_read_cifar_batch(folder / f) for f in files))
        splits += [torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))]
    return ImageData("cifar10", *splits, num_classes=10, mean=CIFAR10_MEAN, std=CIFAR10_STD)


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds dicts, lists, strings, numbers and numpy arrays, and no
    other object: the batch files are pickles, and a crafted one would otherwise run code
    on the machine that reads it."""

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}  # bytes in a protocol-2 pickle

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR-10 batch never holds")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path):
    """One CIFAR-10 batch file: a pickled dict with "data", (n, 3072) uint8 rows holding
    the R, G and B planes of a 32x32 image, and "labels", n ints in [0, 10). The keys are
    str in the original Python 2 pickles (read with latin1) and bytes in files re-saved
    from Python 3; both are accepted. Returns ((n, 3, 32, 32) uint8, (n,) int64)."""
    try:
        with open(path, "rb") as f:
            entry = _ArraysOnly(f, encoding="latin1").load()
        entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in dict(entry).items()}
        x = np.asarray(entry["data"])
        y = np.asarray(entry["labels"])
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
            raise ValueError(f"'data' must be uint8 of shape (n, 3072), got {x.dtype} {x.shape}")
        if y.shape != (len(x),) or y.dtype.kind not in "iu" or (y.size and (y.min() < 0 or y.max() > 9)):
            raise ValueError(f"'labels' must be {len(x)} integers in [0, 9], got {y.dtype} {y.shape}")
    except Exception as e:  # unpickling garbage can raise almost anything
        raise DatasetCorruptError(f"CIFAR-10 file {path} is corrupt or truncated ({type(e).__name__}: {e}); "
                           f"delete it and download again (download=True)") from None
    return x.reshape(-1, 3, 32, 32), y.astype(np.int64)


"""Imagenette: the paper's third data set (its "Imagenette+" is not specified further),
fastai's 10-class ImageNet subset in torchvision's on-disk layout, resized once on load
(shorter side to S, centre square) and cached as an .npz next to the files."""
from __future__ import annotations

import hashlib
import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from patchenv.atomic import atomic_write
from patchenv.data.images import (DatasetCorruptError, DatasetError, DatasetNotFoundError, ImageData, channel_stats,
                                  download_into, root_problem)

IMAGENETTE_IMAGE_SIZE = 64  # default side S: 8-px patches give the paper's N = 64
# torchvision's Imagenette archives: size -> (folder the archive unpacks to, shorter side of
# its images in px; None: the original ImageNet images).
IMAGENETTE_ARCHIVES = {"160px": ("imagenette2-160", 160), "320px": ("imagenette2-320", 320),
                       "full": ("imagenette2", None)}
# The ten ImageNet classes, sorted: torchvision's label order (find_classes sorts the folders).
IMAGENETTE_WNIDS = ("n01440764", "n02102040", "n02979186", "n03000684", "n03028079",
                    "n03394916", "n03417042", "n03425413", "n03445777", "n03888257")
_IMAGENETTE_CACHE_VERSION = 1  # bump when the resizing changes, so old caches are rebuilt
_log = logging.getLogger(__name__)


def _imagenette_sizes(image_size: int) -> list:
    """Archive sizes in order of preference for side `image_size`: the smallest whose
    images are not upsampled first (fastest to decode), then the larger, then the smaller."""
    order = list(IMAGENETTE_ARCHIVES)  # smallest first
    fits = [k for k in order if (IMAGENETTE_ARCHIVES[k][1] or 10 ** 9) >= image_size]
    return fits + [k for k in reversed(order) if k not in fits]


def load(root: Path, download: bool, image_size: int) -> ImageData:
    """Imagenette from torchvision's layout, root/<archive folder>/{train,val}/<wnid>/*.JPEG
    (val is our test split), resized to `image_size` on the first load: each image's
    shorter side is scaled to S and the centre square kept (torchvision's Resize(S) +
    CenterCrop(S), bilinear, antialiased). The resized uint8 arrays, labels and training
    statistics are cached atomically in root/<archive folder>-<S>px.npz; later loads read
    that file (~160 MB at S = 64, about a second) as long as the image files are unchanged
    (same names and sizes) instead of decoding the 13,394 JPEGs again (measured on 2 cores
    with files of the archives' sizes: ~0.8 ms an image from 160px, ~1.7 ms from full)."""
    sizes = _imagenette_sizes(image_size)
    folders = [root / IMAGENETTE_ARCHIVES[k][0] for k in sizes]
    found = [(k, f) for k, f in zip(sizes, folders) if f.is_dir()]
    if not found and download:
        try:
            from torchvision.datasets import Imagenette
        except ImportError as e:  # pragma: no cover
            raise DatasetError("downloading imagenette needs torchvision: pip install torchvision") from e
        # fetches the archive, checks its md5
        download_into("imagenette", root, lambda: Imagenette(str(root), split="train", size=sizes[0], download=True))
        found = [(sizes[0], folders[0])]
    if not found:
        raise DatasetNotFoundError(
            f"Imagenette not found: none of {', '.join(str(f) for f in folders)} exists{root_problem(root)}. "
            f"Pass download=True "
            f"(CLI: --download) to fetch the {sizes[0]} archive with torchvision, or point data_root at a folder "
            f"holding one of {', '.join(IMAGENETTE_ARCHIVES[k][0] for k in IMAGENETTE_ARCHIVES)}/."
        )
    size_name, folder = found[0]
    short_side = IMAGENETTE_ARCHIVES[size_name][1]
    if short_side is not None and short_side < image_size:
        warnings.warn(f"Imagenette {size_name} images are upsampled to {image_size} px; the "
                      f"{sizes[0]} archive would not be", stacklevel=3)
    files = {split: _imagenette_files(folder, split) for split in ("train", "val")}
    digest = hashlib.sha1(repr((_IMAGENETTE_CACHE_VERSION, image_size, files)).encode()).hexdigest()
    cache = root / f"{folder.name}-{image_size}px.npz"
    arrays = _read_imagenette_cache(cache, digest)
    if arrays is None:
        _log.info("resizing Imagenette (%s) to %d px; cached in %s", folder, image_size, cache)
        arrays = {}
        for split, key in (("train", "train"), ("val", "test")):
            paths = [folder / split / rel for rel, _, _ in files[split]]
            arrays[f"{key}_x"] = _load_images(paths, image_size)
            arrays[f"{key}_y"] = np.array([label for _, label, _ in files[split]], dtype=np.int64)
        arrays["mean"], arrays["std"] = channel_stats(arrays["train_x"])
        _write_imagenette_cache(cache, digest, arrays)
    t = {k: torch.from_numpy(arrays[k]) for k in ("train_x", "train_y", "test_x", "test_y")}
    return ImageData("imagenette", t["train_x"], t["train_y"], t["test_x"], t["test_y"], 10,
                     tuple(float(v) for v in arrays["mean"]), tuple(float(v) for v in arrays["std"]))


def _imagenette_files(folder: Path, split: str) -> list:
    """[(path relative to folder/split, label, file size)] in torchvision's order: classes
    by sorted wnid, then file names sorted; files ending in .jpeg, any case."""
    files = []
    for label, wnid in enumerate(IMAGENETTE_WNIDS):
        class_dir = folder / split / wnid
        if not class_dir.is_dir():
            raise DatasetCorruptError(f"Imagenette folder {class_dir} is missing: {folder} is incomplete; "
                                      f"delete it and download again (download=True)")
        entries = sorted((e.name, e.stat().st_size) for e in os.scandir(class_dir)
                         if e.is_file() and e.name.lower().endswith(".jpeg"))
        if not entries:
            raise DatasetCorruptError(f"Imagenette folder {class_dir} holds no .JPEG files: {folder} is incomplete; "
                                      f"delete it and download again (download=True)")
        files += [(f"{wnid}/{name}", label, nbytes) for name, nbytes in entries]
    return files


def _load_image(path: Path, size: int) -> np.ndarray:
    """One image file -> (3, size, size) uint8: shorter side scaled to `size`, centre square."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.draft("RGB", (size, size))  # JPEG: decode at 1/2, 1/4 or 1/8 scale when still >= size
            img = img.convert("RGB")  # grey and CMYK files exist in ImageNet
            w, h = img.size
            m = min(w, h)
            box = ((w - m) / 2, (h - m) / 2, (w + m) / 2, (h + m) / 2)  # the centre square, in source pixels
            img = img.resize((size, size), Image.Resampling.BILINEAR, box=box)
            return np.asarray(img).transpose(2, 0, 1)
    except Exception as e:  # PIL raises several types for damaged files
        raise DatasetCorruptError(f"Imagenette image {path} is corrupt or truncated ({type(e).__name__}: {e}); "
                                  f"delete its folder and download again (download=True)") from None


def _load_images(paths: list, size: int, chunk: int = 512) -> np.ndarray:
    """Decode and resize into one preallocated (n, 3, size, size) uint8 array; threads
    (PIL releases the GIL while decoding), a chunk of files in flight at a time."""
    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for start in range(0, len(paths), chunk):
            for i, image in enumerate(pool.map(_load_image, paths[start:start + chunk],
                                               [size] * len(paths[start:start + chunk]))):
                out[start + i] = image
    return out



_CACHE_KEYS = ("train_x", "train_y", "test_x", "test_y", "mean", "std")


def _read_imagenette_cache(path: Path, digest: str) -> Optional[dict]:
    """The cached arrays, or None when there is no cache or it belongs to other files."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["digest"]) != digest:
                return None
            return {k: z[k] for k in _CACHE_KEYS}
    except Exception as e:  # written atomically, so damage came later: rebuild it
        warnings.warn(f"ignoring the unreadable Imagenette cache {path} ({type(e).__name__}: {e}); rebuilding it",
                      stacklevel=4)
        return None


def _write_imagenette_cache(path: Path, digest: str, arrays: dict) -> None:
    def write(tmp: Path):
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a bare name
            np.savez(f, digest=np.array(digest), **arrays)

    try:
        atomic_write(path, write)
    except OSError as e:  # a read-only data folder: every load resizes again
        warnings.warn(f"could not cache the resized Imagenette in {path} ({e}); the next load resizes again",
                      stacklevel=4)


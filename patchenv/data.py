"""Image classification data sets, held on the training device as uint8 tensors.

Following airbench: the whole training split lives on the device, each epoch is a
`torch.randperm` on the device, and augmentation (random crop with 4-pixel padding,
horizontal flip, normalisation) runs as batched tensor ops. No DataLoader in the hot path.

Data sets (all end up as (n, C, S, S) uint8 plus int64 labels; S = 32 unless
``image_size`` asks for another side, 64 for Imagenette):
- ``cifar10``: torchvision's CIFAR-10 loader (``download=True`` fetches it).
- ``fashion_mnist``: the paper's second data set; read offline from Debian's
  ``dataset-fashion-mnist`` files in /usr/share/datasets/fashion-mnist/ when present,
  else torchvision (with ``download``). 28x28 is zero-padded to 32x32.
- ``imagenette``: the paper's third set (its "Imagenette+" is not specified further):
  fastai's 10-class ImageNet subset in torchvision's on-disk layout, resized once on load
  (shorter side to S, centre square) and cached as an .npz next to the files.
- ``digits``: scikit-learn's shipped 8x8 digits (1,797 images, offline), upsampled to
  32x32 with 3 channels so the patch geometry matches CIFAR.
- ``synthetic``: generated from a seed, learnable (class templates plus noise), offline.
"""
from __future__ import annotations

import gzip
import hashlib
import logging
import os
import pickle
import tempfile
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from patchenv.atomic import atomic_write

DATASETS = ("cifar10", "fashion_mnist", "imagenette", "digits", "synthetic")
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# The paper's CIFAR-10 normalisation (AGENTVIT.md); other sets use their own statistics.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)


class DatasetError(RuntimeError):
    """A data set is missing or its files are unreadable; the message says what to do."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The data set is not on disk and downloading was not allowed."""


class DatasetCorruptError(DatasetError, ValueError):
    """A data file exists but cannot be read as what it should hold; names the file."""


def default_data_root() -> Path:
    return Path(os.environ.get("PATCHENV_DATA", Path.home() / ".cache" / "patchenv"))


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
        return _imagenette(root, download, int(image_size or IMAGENETTE_IMAGE_SIZE))
    size = int(image_size or 32)
    if name == "digits":
        return _digits(channels, size)
    if name == "synthetic":
        return synthetic(seed=seed, channels=channels, image_size=size)
    images = _cifar10(root, download) if name == "cifar10" else _fashion_mnist(root, download, channels)
    if size == images.image_size:
        return images
    train_x, test_x = _resize(images.train_x, size), _resize(images.test_x, size)
    mean, std = (images.mean, images.std) if name == "cifar10" else _channel_stats(train_x)
    return ImageData(images.name, train_x, images.train_y, test_x, images.test_y, images.num_classes, mean, std)


def _resize(x: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """uint8 (n, C, H, W) -> uint8 (n, C, size, size), bilinear (antialiased when
    shrinking), in chunks so the float copy stays small."""
    out = torch.empty(len(x), x.shape[1], size, size, dtype=torch.uint8)
    for i in range(0, len(x), chunk):
        xf = F.interpolate(x[i:i + chunk].float(), size=(size, size), mode="bilinear", align_corners=False,
                           antialias=size < x.shape[-1])
        out[i:i + chunk] = xf.round_().clamp_(0, 255).to(torch.uint8)
    return out


def _root_problem(root: Path) -> str:
    """Why `root` cannot be a data folder (", ..." to append to a message), or ""."""
    if root.exists() and not root.is_dir():
        return f"; the data root {root} is a file, not a folder"
    blocker = next((p for p in root.parents if p.exists()), None)
    if not root.exists() and blocker is not None and not blocker.is_dir():
        return f"; the data root {root} cannot exist: {blocker} is a file"
    return ""


def _download(name: str, root: Path, fetch: Callable[[], Any]) -> None:
    """Run torchvision's `fetch` of data set `name` into `root`, after checking that `root`
    is a folder this process can write (before any network traffic); every failure is a
    DatasetError naming the folder and the cause."""
    problem = _root_problem(root)
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


# -- CIFAR-10 ---------------------------------------------------------------------------
_CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
_CIFAR10_TEST = ["test_batch"]


def _cifar10(root: Path, download: bool) -> ImageData:
    folder = root / "cifar-10-batches-py"
    missing = [f for f in _CIFAR10_TRAIN + _CIFAR10_TEST if not (folder / f).is_file()]
    if missing and download:
        try:
            from torchvision.datasets import CIFAR10
        except ImportError as e:  # pragma: no cover
            raise DatasetError("downloading cifar10 needs torchvision: pip install torchvision") from e
        # fetches the archive and checks its md5
        _download("cifar10", root, lambda: CIFAR10(str(root), train=True, download=True))
        missing = [f for f in _CIFAR10_TRAIN + _CIFAR10_TEST if not (folder / f).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"CIFAR-10 not found under {folder} (missing {', '.join(missing)}{_root_problem(root)}). Pass "
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


def _read_cifar_batch(path: Path):
    """One CIFAR-10 batch file: a pickled dict with "data", (n, 3072) uint8 rows holding
    the R, G and B planes of a 32x32 image, and "labels", n ints in [0, 10). The keys are
    str in the original Python 2 pickles (read with latin1) and bytes in files re-saved
    from Python 3; both are accepted. Returns ((n, 3, 32, 32) uint8, (n,) int64)."""
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
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


# -- Fashion-MNIST ------------------------------------------------------------------------
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


def _fashion_mnist(root: Path, download: bool, channels: int) -> ImageData:
    files = _find_fashion_mnist(root)
    if files is None:
        if not download:
            raise DatasetNotFoundError(
                f"Fashion-MNIST not found in {DEBIAN_FASHION_MNIST} or {root / 'FashionMNIST' / 'raw'}"
                f"{_root_problem(root)}. Install it offline with `apt-get install dataset-fashion-mnist`, or pass "
                f"download=True (CLI: --download) to fetch it with torchvision."
            )
        from torchvision.datasets import FashionMNIST
        _download("fashion_mnist", root, lambda: [FashionMNIST(str(root), train=train, download=True)
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
    mean, std = _channel_stats(train_x)
    return ImageData("fashion_mnist", train_x, torch.from_numpy(arrays["train_y"].astype(np.int64)),
                     test_x, torch.from_numpy(arrays["test_y"].astype(np.int64)), 10, mean, std)


# -- Imagenette -----------------------------------------------------------------------------
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


def _imagenette(root: Path, download: bool, image_size: int) -> ImageData:
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
        _download("imagenette", root, lambda: Imagenette(str(root), split="train", size=sizes[0], download=True))
        found = [(sizes[0], folders[0])]
    if not found:
        raise DatasetNotFoundError(
            f"Imagenette not found: none of {', '.join(str(f) for f in folders)} exists{_root_problem(root)}. "
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
        arrays["mean"], arrays["std"] = _channel_stats(arrays["train_x"])
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


def _channel_stats(x, chunk: int = 256) -> tuple[tuple, tuple]:
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


# -- scikit-learn digits ------------------------------------------------------------------
def _digits(channels: int, image_size: int = 32) -> ImageData:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images).float().unsqueeze(1) / 16.0  # (1797, 1, 8, 8) in [0, 1]
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False,
                      antialias=image_size < 8)
    x = (x * 255).round().clamp(0, 255).to(torch.uint8).expand(-1, channels, -1, -1).contiguous()
    y = torch.from_numpy(d.target.astype(np.int64))
    # A fixed stratified-by-permutation split: 20% test, the same on every machine.
    perm = torch.from_numpy(np.random.default_rng(0).permutation(len(y)))
    n_test = len(y) // 5
    test, train = perm[:n_test], perm[n_test:]
    mean, std = _channel_stats(x[train])
    return ImageData("digits", x[train], y[train], x[test], y[test], 10, mean, std)


# -- synthetic ----------------------------------------------------------------------------
def synthetic(n_train: int = 2048, n_test: int = 512, num_classes: int = 10, seed: int = 0,
              channels: int = 3, image_size: int = 32) -> ImageData:
    """Learnable random data: each class is a smooth random template; an image is its
    class template, randomly brightened, plus pixel noise."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.rand(num_classes, channels, image_size // 4, image_size // 4, generator=g)
    templates = F.interpolate(templates, size=(image_size, image_size), mode="bilinear", align_corners=False)

    def make(n):
        y = torch.randint(num_classes, (n,), generator=g)
        scale = 0.7 + 0.6 * torch.rand(n, 1, 1, 1, generator=g)
        x = templates[y] * scale + 0.25 * torch.randn(n, channels, image_size, image_size, generator=g)
        return (x.clamp(0, 1) * 255).round().to(torch.uint8), y

    train_x, train_y = make(n_train)
    test_x, test_y = make(n_test)
    mean, std = _channel_stats(train_x)
    return ImageData("synthetic", train_x, train_y, test_x, test_y, num_classes, mean, std)


# -- batches on the device ----------------------------------------------------------------
def to_unit(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 in [0, 1] (torchvision's ToTensor)."""
    return x_uint8.float().div_(255)


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """float (B, C, H, W) in [0, 1] -> normalised; mean/std shaped (1, C, 1, 1)."""
    return (x - mean) / std


def augment(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with `pad`-pixel zero padding and random horizontal flip, batched.

    x is (B, C, H, W) in [0, 1], before normalisation, so the padding is black as in the
    paper's torchvision pipeline (RandomCrop, flip, ToTensor, Normalize). One gather does
    crop and flip."""
    b, c, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), device=dev, generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b,), device=dev, generator=generator)
    flip = torch.rand(b, device=dev, generator=generator) < 0.5
    ar_h = torch.arange(h, device=dev)
    ar_w = torch.arange(w, device=dev)
    cols = torch.where(flip[:, None], ar_w.flip(0)[None], ar_w[None]) + dx[:, None]  # (B, W)
    rows = ar_h[None] + dy[:, None]  # (B, H)
    bi = torch.arange(b, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()

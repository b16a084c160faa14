"""Small data sets written in each source's own on-disk format (CIFAR-10's pickled batches,
Fashion-MNIST's IDX files), for the loaders' tests: the real files cannot be downloaded here."""
import gzip
import pickle
import struct

import numpy as np
from patchenv.data import fashion_mnist


CIFAR_TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]



# -- helpers: tiny data sets in their real on-disk formats (other test files import these) --
def write_cifar10(root, n_per_file=8, seed=0, bytes_keys=True):
    """A small CIFAR-10 file set in CIFAR-10's own format under root/cifar-10-batches-py:
    data_batch_1..5, test_batch, batches.meta; pickled dicts with "data" (n, 3072) uint8
    (R, G, B planes of a 32x32 image) and "labels". Returns the arrays written, as
    {file: (images (n, 3, 32, 32), labels (n,))}."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    key = (lambda k: k.encode()) if bytes_keys else (lambda k: k)
    written = {}
    for name in CIFAR_TRAIN_FILES + ["test_batch"]:
        x = rng.integers(0, 256, (n_per_file, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, n_per_file)]
        with open(folder / name, "wb") as f:
            pickle.dump({key("batch_label"): key(name), key("labels"): y, key("data"): x,
                         key("filenames"): [key(f"{name}_{i}.png") for i in range(n_per_file)]}, f)
        written[name] = (x.reshape(-1, 3, 32, 32), np.array(y))
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({key("label_names"): [key(c) for c in "abcdefghij"], key("num_cases_per_batch"): n_per_file,
                     key("num_vis"): 3072}, f)
    return written


def idx_bytes(a: np.ndarray) -> bytes:
    a = np.ascontiguousarray(a, dtype=np.uint8)
    return struct.pack(">I", 0x0800 | a.ndim) + b"".join(struct.pack(">I", d) for d in a.shape) + a.tobytes()


def write_fashion_mnist(folder, n_train=20, n_test=8, seed=0, gz=True):
    """The four Fashion-MNIST IDX files (gzipped like the originals) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {"train_x": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train_y": rng.integers(0, 10, n_train, dtype=np.uint8),
              "test_x": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "test_y": rng.integers(0, 10, n_test, dtype=np.uint8)}
    for key, stem in fashion_mnist._FMNIST_FILES.items():
        raw = idx_bytes(arrays[key])
        if gz:
            with gzip.open(folder / (stem + ".gz"), "wb") as f:
                f.write(raw)
        else:
            (folder / stem).write_bytes(raw)
    return arrays

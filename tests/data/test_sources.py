"""Data sets and the on-device batch pipeline: file formats, offline sets, augmentation,
and clear errors for missing, unknown or corrupt data."""
import gzip
import pickle
import socket

import numpy as np
import pytest
import torch

from patchenv import data
from patchenv.data import fashion_mnist, images
from patchenv.env import PatchSelectionEnv
from datasets_on_disk import CIFAR_TRAIN_FILES, idx_bytes, write_cifar10, write_fashion_mnist

@pytest.fixture
def no_debian_fmnist(monkeypatch, tmp_path):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FASHION_MNIST", tmp_path / "no-such-debian-folder")


@pytest.fixture
def offline(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the network was used")
    monkeypatch.setattr(socket.socket, "connect", refuse)


# -- CIFAR-10 ----------------------------------------------------------------------------
@pytest.mark.parametrize("bytes_keys", [True, False], ids=["bytes-keys", "str-keys"])
def test_cifar10_file_format(tmp_path, offline, bytes_keys):
    written = write_cifar10(tmp_path, n_per_file=8, bytes_keys=bytes_keys)
    d = data.load_dataset("cifar10", data_root=tmp_path)
    assert d.name == "cifar10" and d.num_classes == 10 and d.channels == 3 and d.image_size == 32
    assert d.train_x.shape == (40, 3, 32, 32) and d.train_x.dtype == torch.uint8
    assert d.test_x.shape == (8, 3, 32, 32) and d.train_y.dtype == torch.int64
    # Files in order, each row the R, G, B planes of one image.
    want_x = np.concatenate([written[f][0] for f in CIFAR_TRAIN_FILES])
    want_y = np.concatenate([written[f][1] for f in CIFAR_TRAIN_FILES])
    np.testing.assert_array_equal(d.train_x.numpy(), want_x)
    np.testing.assert_array_equal(d.train_y.numpy(), want_y)
    np.testing.assert_array_equal(d.test_x.numpy(), written["test_batch"][0])
    np.testing.assert_array_equal(d.test_y.numpy(), written["test_batch"][1])
    assert (d.mean, d.std) == (data.CIFAR10_MEAN, data.CIFAR10_STD)  # the paper's normalisation


def test_cifar10_missing_without_download_says_download(tmp_path):
    # FileNotFoundError too, so plain `except FileNotFoundError` catches it.
    with pytest.raises(data.DatasetNotFoundError, match="download") as e:
        data.load_dataset("cifar10", data_root=tmp_path)
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, data.DatasetError)
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(data.DatasetError, match=r"data_batch_4[\s\S]*download=True"):
        data.load_dataset("cifar10", data_root=tmp_path)
    with pytest.raises(data.DatasetError, match="download"):  # through the env as well
        PatchSelectionEnv(dataset="cifar10", data_root=tmp_path, device="cpu")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "missing-key", "bad-shape", "label-count"])
def test_cifar10_corrupt_file_is_named(tmp_path, damage):
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    raw = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"this is not a pickle at all" * 10)
    elif damage == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        entry = pickle.loads(raw)
        if damage == "missing-key":
            del entry[b"labels"]
        elif damage == "bad-shape":
            entry[b"data"] = entry[b"data"][:, :3000]
        else:
            entry[b"labels"] = entry[b"labels"][:-1]
        path.write_bytes(pickle.dumps(entry))
    with pytest.raises(data.DatasetCorruptError) as e:
        data.load_dataset("cifar10", data_root=tmp_path)
    assert isinstance(e.value, ValueError)
    assert str(path) in str(e.value) and "corrupt" in str(e.value)
    assert e.value.__cause__ is None and e.value.__suppress_context__  # no raw unpickling traceback


@pytest.mark.parametrize("name,dataset_kwargs", [("cifar10", {}), ("fashion_mnist", {}), ("imagenette", {})])
def test_a_data_root_that_is_or_lies_under_a_file_is_named(tmp_path, no_debian_fmnist, name, dataset_kwargs):
    (tmp_path / "afile").write_text("x")
    for root, why in ((tmp_path / "afile", "is a file, not a folder"), (tmp_path / "afile" / "sub", "afile is a file")):
        with pytest.raises(data.DatasetNotFoundError, match=why):
            data.load_dataset(name, data_root=root)
        with pytest.raises(data.DatasetError, match=f"cannot download {name}.*{why}") as e:
            data.load_dataset(name, data_root=root, download=True)  # refused before any network traffic
        assert "\n" not in str(e.value)
    assert (tmp_path / "afile").read_text() == "x"


def test_a_failed_download_is_a_dataset_error_naming_the_folder(tmp_path, monkeypatch):
    import urllib.error

    import torchvision.datasets

    def unreachable(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", unreachable)
    with pytest.raises(data.DatasetError, match="downloading cifar10 into .* failed \\(URLError") as e:
        data.load_dataset("cifar10", data_root=tmp_path / "new", download=True)
    assert str(tmp_path / "new") in str(e.value) and "network" in str(e.value)
    assert (tmp_path / "new").is_dir()  # the folder it was going to write


def test_channel_stats_match_a_direct_float64_computation():
    """One helper for every data set's normalisation: per-channel mean and unbiased std of
    the images in [0, 1], summed in chunks, against numpy's over the whole array at once;
    a flat channel's std is floored at 1e-3 (normalising would divide by zero)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(1000, 3, 8, 8), dtype=np.uint8)
    x[:, 2] = 7  # a constant channel
    mean, std = images.channel_stats(x, chunk=64)
    xf = x.astype(np.float64) / 255
    np.testing.assert_allclose(mean, xf.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std[:2], xf[:, :2].transpose(1, 0, 2, 3).reshape(2, -1).std(axis=1, ddof=1),
                               rtol=1e-9)
    assert std[2] == 1e-3 and isinstance(mean, tuple) and isinstance(mean[0], float)
    assert images.channel_stats(torch.from_numpy(x), chunk=64) == (mean, std)  # a CPU tensor: the same numbers
    d = data.synthetic(n_train=64, n_test=8)
    assert (d.mean, d.std) == images.channel_stats(d.train_x)


# -- Fashion-MNIST ----------------------------------------------------------------------
@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_fashion_mnist_idx_files(tmp_path, no_debian_fmnist, offline, gz):
    arrays = write_fashion_mnist(tmp_path / "FashionMNIST" / "raw", gz=gz)
    d = data.load_dataset("fashion_mnist", data_root=tmp_path)
    assert d.train_x.shape == (20, 3, 32, 32) and d.test_x.shape == (8, 3, 32, 32)
    assert d.train_x.dtype == torch.uint8 and d.num_classes == 10
    # 28x28 zero-padded by 2 on every side, the same image in each channel.
    for split in ("train", "test"):
        x = getattr(d, f"{split}_x").numpy()
        np.testing.assert_array_equal(x[:, :, 2:30, 2:30], np.repeat(arrays[f"{split}_x"][:, None], 3, axis=1))
        assert x.sum() == 3 * int(arrays[f"{split}_x"].astype(np.int64).sum())  # the border is black
        np.testing.assert_array_equal(getattr(d, f"{split}_y").numpy(), arrays[f"{split}_y"].astype(np.int64))
    one = data.load_dataset("fashion_mnist", data_root=tmp_path, channels=1)
    assert one.train_x.shape == (20, 1, 32, 32)
    assert np.allclose(d.mean, d.mean[0]) and np.isclose(one.mean[0], d.mean[0])


def test_fashion_mnist_found_in_debian_folder_first(tmp_path, monkeypatch):
    debian = tmp_path / "debian"
    arrays = write_fashion_mnist(debian, n_train=12, seed=1)
    write_fashion_mnist(tmp_path / "root" / "FashionMNIST" / "raw", n_train=20, seed=2)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FASHION_MNIST", debian)
    d = data.load_dataset("fashion_mnist", data_root=tmp_path / "root")
    np.testing.assert_array_equal(d.train_y.numpy(), arrays["train_y"])


def test_fashion_mnist_missing_says_how_to_get_it(tmp_path, no_debian_fmnist):
    with pytest.raises(data.DatasetNotFoundError) as e:
        data.load_dataset("fashion_mnist", data_root=tmp_path)
    assert "download=True" in str(e.value) and "dataset-fashion-mnist" in str(e.value)


@pytest.mark.parametrize("damage", ["garbage-gz", "truncated-gz", "bad-deflate", "bad-magic", "short-data",
                                    "label-count"])
def test_fashion_mnist_corrupt_file_is_named(tmp_path, no_debian_fmnist, damage):
    folder = tmp_path / "FashionMNIST" / "raw"
    write_fashion_mnist(folder)
    path = folder / ("train-labels-idx1-ubyte.gz" if damage == "label-count" else "train-images-idx3-ubyte.gz")
    gz = path.read_bytes()
    raw = gzip.decompress(gz)
    if damage == "garbage-gz":
        path.write_bytes(b"not gzip" * 20)
    elif damage == "truncated-gz":
        path.write_bytes(gz[: len(gz) // 2])
    elif damage == "bad-deflate":  # valid gzip header, scrambled compressed stream
        body = bytearray(gz)
        body[20:60] = bytes(40)
        path.write_bytes(bytes(body))
    elif damage == "bad-magic":
        path.write_bytes(gzip.compress(b"\x00\x00\x09\x03" + raw[4:]))
    elif damage == "short-data":
        path.write_bytes(gzip.compress(raw[:-100]))
    else:  # a labels file with one label fewer than there are images
        path.write_bytes(gzip.compress(idx_bytes(np.zeros(19, np.uint8))))
    with pytest.raises(data.DatasetCorruptError) as e:
        data.load_dataset("fashion_mnist", data_root=tmp_path)
    assert str(path) in str(e.value)


# -- digits and synthetic -----------------------------------------------------------------
def test_digits_offline_geometry(offline):
    d = data.load_dataset("digits")
    assert d.name == "digits" and d.num_classes == 10
    assert d.train_x.dtype == torch.uint8 and tuple(d.train_x.shape[1:]) == (3, 32, 32)
    assert len(d.train_y) + len(d.test_y) == 1797 and len(d.test_y) == 1797 // 5
    assert set(d.train_y.tolist()) == set(range(10)) and set(d.test_y.tolist()) == set(range(10))
    assert torch.equal(d.train_x[:, 0], d.train_x[:, 2])  # grey: the channels are copies
    assert int(d.train_x.max()) > 200 and int(d.train_x.min()) == 0  # the full 0..255 range is used
    # The split is fixed: the same on every load.
    assert torch.equal(data.load_dataset("digits").test_y, d.test_y)


def test_synthetic_seed_determinism():
    a, b, c = data.synthetic(seed=3, n_train=64, n_test=16), data.synthetic(seed=3, n_train=64, n_test=16), \
        data.synthetic(seed=4, n_train=64, n_test=16)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.train_y, b.train_y) and torch.equal(a.test_x, b.test_x)
    assert not torch.equal(a.train_x, c.train_x)
    assert a.train_x.dtype == torch.uint8 and a.train_x.shape == (64, 3, 32, 32)
    # load_dataset's synthetic set is the seed-0 default, identical on every call.
    assert torch.equal(data.load_dataset("synthetic").train_x, data.synthetic(seed=0).train_x)


def test_synthetic_is_learnable(tiny_kwargs):
    """A short run of the tiny ViT (120 steps, all patches) lifts test accuracy far above
    the 10% of chance."""
    env = PatchSelectionEnv(**tiny_kwargs)
    env.reset(seed=0)
    before = env.evaluate()["accuracy"]
    for _ in range(120):
        env.step(np.ones(64, dtype=np.int8))
    after = env.evaluate()
    assert before < 0.2
    assert after["accuracy"] > 0.3 and after["n"] == 512


def test_unknown_dataset_lists_valid_names():
    for call in (lambda: data.load_dataset("imagenet"), lambda: PatchSelectionEnv(dataset="imagenet", device="cpu")):
        with pytest.raises(ValueError) as e:
            call()
        for name in data.DATASETS:
            assert name in str(e.value)
        assert "digits" in str(e.value) and "imagenet" in str(e.value)


# -- batches on the device ----------------------------------------------------------------
def _augment_reference(x, generator, pad=4):
    """Slow per-image reference: pad with black, crop at the drawn offset, maybe flip.
    Draws dy, dx, flip from `generator` in the same order as `data.augment`."""
    b, c, h, w = x.shape
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    out = torch.empty_like(x)
    for i in range(b):
        padded = torch.zeros(c, h + 2 * pad, w + 2 * pad)
        padded[:, pad:pad + h, pad:pad + w] = x[i]
        crop = padded[:, int(dy[i]):int(dy[i]) + h, int(dx[i]):int(dx[i]) + w]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out, dy, dx, flip


def test_augment_matches_per_image_reference():
    x = torch.rand(48, 3, 32, 32, generator=torch.Generator().manual_seed(1)) + 0.5  # never 0: padding shows
    fast = data.augment(x, torch.Generator().manual_seed(7))
    slow, dy, dx, flip = _augment_reference(x, torch.Generator().manual_seed(7))
    # The draws must cover the cases: both flips and offsets at both extremes.
    assert 0 < int(flip.sum()) < 48 and {0, 8} <= set(dy.tolist()) | set(dx.tolist())
    assert torch.equal(fast, slow)
    assert fast.is_contiguous() and fast.shape == x.shape
    # An offset of (4, 4) without a flip is the identity; black appears only with padding.
    ident = (dy == 4) & (dx == 4) & ~flip
    assert torch.equal(fast[ident], x[ident])
    shifted = (dy != 4) | (dx != 4)
    assert bool((fast[shifted] == 0).flatten(1).any(1).all()) and not bool((fast[~shifted] == 0).any())


def test_normalize_and_to_unit():
    x = torch.tensor([[[[0, 255], [51, 102]]]], dtype=torch.uint8).expand(1, 3, 2, 2)
    u = data.to_unit(x)
    assert u.dtype == torch.float32 and torch.allclose(u[0, 0], torch.tensor([[0, 1], [0.2, 0.4]]))
    mean = torch.tensor(data.CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(data.CIFAR10_STD).view(1, 3, 1, 1)
    n = data.normalize(u, mean, std)
    assert torch.allclose(n[0, 1, 0, 1], torch.tensor((1 - 0.4822) / 0.1994))

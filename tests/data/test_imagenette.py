"""Imagenette (the paper's third data set) on a tiny file set in torchvision's own on-disk
layout: labels in torchvision's order, the resize (shorter side, centre square), the .npz
cache, missing and corrupt files, the registered id; and `image_size` for the other sets."""
import argparse
import socket

import gymnasium as gym
import numpy as np
import pytest
import torch
from PIL import Image

from patchenv import data
from patchenv.data import imagenette, images
from patchenv.env.config import EnvConfig, add_env_arguments
from datasets_on_disk import write_cifar10

TINY_VIT = dict(device="cpu", batch_size=4, dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64)


def class_colour(label: int) -> tuple:
    return (20 + 23 * label, 230 - 21 * label, 60 + 15 * (label % 4))


def write_imagenette(root, size="160px", n_train=3, n_val=2, side=24):
    """A small Imagenette in torchvision's layout, root/<archive folder>/{train,val}/<wnid>/
    *.JPEG: every image a centred side x side square of its class's colour on a black
    frame, landscape (2:1) or portrait (1:2) in turn, so only a centre crop is all colour.
    Returns the archive folder."""
    folder = root / imagenette.IMAGENETTE_ARCHIVES[size][0]
    for split, n in (("train", n_train), ("val", n_val)):
        for label, wnid in enumerate(imagenette.IMAGENETTE_WNIDS):
            class_dir = folder / split / wnid
            class_dir.mkdir(parents=True)
            for i in range(n):
                wide = i % 2 == 0
                w, h = (2 * side, side) if wide else (side, 2 * side)
                img = Image.new("RGB", (w, h))
                img.paste(class_colour(label), ((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2))
                img.save(class_dir / f"{wnid}_{i:05d}.JPEG", quality=95, subsampling=0)  # 4:4:4: sharp colour edges
    return folder


@pytest.fixture
def offline(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the network was used")
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_layout_labels_and_centre_crop(tmp_path, offline):
    write_imagenette(tmp_path)
    d = data.load_dataset("imagenette", data_root=tmp_path, image_size=64)
    assert d.name == "imagenette" and d.num_classes == 10 and d.channels == 3 and d.image_size == 64
    assert d.train_x.shape == (30, 3, 64, 64) and d.test_x.shape == (20, 3, 64, 64)
    assert d.train_x.dtype == torch.uint8 and d.train_y.dtype == torch.int64
    # torchvision's order: classes by sorted wnid, files sorted within a class.
    assert d.train_y.tolist() == [c for c in range(10) for _ in range(3)]
    assert d.test_y.tolist() == [c for c in range(10) for _ in range(2)]
    for x, y in ((d.train_x, d.train_y), (d.test_x, d.test_y)):
        inner = x[:, :, 3:-3, 3:-3].float()  # the centre square is the whole colour area (edges: JPEG ringing)
        want = torch.tensor([class_colour(int(c)) for c in y], dtype=torch.float32)[:, :, None, None]
        assert (inner - want).abs().max() <= 8, "each image is its class's colour, black frame cropped off"
    # The normalisation statistics are the training set's.
    xf = d.train_x.double() / 255
    assert np.allclose(d.mean, xf.mean(dim=(0, 2, 3)), atol=1e-6)
    assert np.allclose(d.std, xf.std(dim=(0, 2, 3)), atol=1e-6)


def test_default_size_is_64_and_every_archive_is_found(tmp_path):
    for size in imagenette.IMAGENETTE_ARCHIVES:
        root = tmp_path / size
        write_imagenette(root, size=size, n_train=1, n_val=1)
        d = data.load_dataset("imagenette", data_root=root)
        assert d.train_x.shape == (10, 3, 64, 64)
        assert (root / f"{imagenette.IMAGENETTE_ARCHIVES[size][0]}-64px.npz").is_file()
    # With several archives on disk, the smallest that needs no upsampling is read.
    root = tmp_path / "both"
    write_imagenette(root, size="320px", n_train=2, n_val=1)
    write_imagenette(root, size="160px", n_train=1, n_val=1)
    assert len(data.load_dataset("imagenette", data_root=root, image_size=32).train_y) == 10
    assert len(data.load_dataset("imagenette", data_root=root, image_size=200).train_y) == 20
    with pytest.warns(UserWarning, match="upsampled"):
        data.load_dataset("imagenette", data_root=tmp_path / "160px", image_size=200)


def test_cache_written_atomically_and_reused(tmp_path, monkeypatch):
    folder = write_imagenette(tmp_path, n_train=2, n_val=1)
    first = data.load_dataset("imagenette", data_root=tmp_path, image_size=32)
    cache = tmp_path / "imagenette2-160-32px.npz"
    assert cache.is_file() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    def no_decoding(path, size):
        raise AssertionError("decoded an image although the cache is valid")
    monkeypatch.setattr(imagenette, "_load_image", no_decoding)
    second = data.load_dataset("imagenette", data_root=tmp_path, image_size=32)
    for key in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(first, key), getattr(second, key)), key
    assert (first.mean, first.std) == (second.mean, second.std)
    monkeypatch.undo()

    # Other files (one removed) make the cache stale: it is rebuilt.
    (folder / "train" / imagenette.IMAGENETTE_WNIDS[0] / f"{imagenette.IMAGENETTE_WNIDS[0]}_00001.JPEG").unlink()
    assert len(data.load_dataset("imagenette", data_root=tmp_path, image_size=32).train_y) == 19
    monkeypatch.setattr(imagenette, "_load_image", no_decoding)
    assert len(data.load_dataset("imagenette", data_root=tmp_path, image_size=32).train_y) == 19
    monkeypatch.undo()
    # A damaged cache is rebuilt with a warning, not an error.
    cache.write_bytes(cache.read_bytes()[:100])
    with pytest.warns(UserWarning, match="cache"):
        again = data.load_dataset("imagenette", data_root=tmp_path, image_size=32)
    assert torch.equal(again.test_x, first.test_x)
    np.load(cache)  # whole again


def test_missing_says_download_and_where(tmp_path):
    with pytest.raises(data.DatasetNotFoundError) as e:
        data.load_dataset("imagenette", data_root=tmp_path)
    assert isinstance(e.value, FileNotFoundError)
    message = str(e.value)
    assert "download=True" in message and "--download" in message
    assert str(tmp_path / "imagenette2-160") in message and str(tmp_path / "imagenette2") in message
    with pytest.raises(data.DatasetNotFoundError, match="download"):  # through the registered id
        gym.make("patchenv/Imagenette-v1", data_root=tmp_path, **TINY_VIT)


def test_download_fetches_the_smallest_fitting_archive(tmp_path, monkeypatch):
    import torchvision.datasets

    calls = []

    class FakeImagenette:  # stands in for the download: unpacks the layout the real one would
        def __init__(self, root, split, size, download):
            calls.append((root, split, size, download))
            write_imagenette(tmp_path, size=size, n_train=1, n_val=1)

    monkeypatch.setattr(torchvision.datasets, "Imagenette", FakeImagenette)
    d = data.load_dataset("imagenette", data_root=tmp_path, download=True, image_size=16)
    assert calls == [(str(tmp_path), "train", "160px", True)] and d.train_x.shape == (10, 3, 16, 16)
    data.load_dataset("imagenette", data_root=tmp_path, download=True, image_size=16)
    assert len(calls) == 1  # found on disk: no second download


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_jpeg_is_named(tmp_path, damage):
    folder = write_imagenette(tmp_path, n_train=2, n_val=1)
    path = folder / "val" / imagenette.IMAGENETTE_WNIDS[4] / f"{imagenette.IMAGENETTE_WNIDS[4]}_00000.JPEG"
    raw = path.read_bytes()
    path.write_bytes({"garbage": b"not a jpeg" * 50, "truncated": raw[: len(raw) // 2], "empty": b""}[damage])
    with pytest.raises(data.DatasetCorruptError) as e:
        data.load_dataset("imagenette", data_root=tmp_path, image_size=32)
    assert isinstance(e.value, ValueError) and str(path) in str(e.value) and "corrupt" in str(e.value)
    assert not (tmp_path / "imagenette2-160-32px.npz").exists()


def test_incomplete_folder_is_named(tmp_path):
    folder = write_imagenette(tmp_path, n_train=1, n_val=1)
    missing = folder / "val" / imagenette.IMAGENETTE_WNIDS[9]
    for f in missing.iterdir():
        f.unlink()
    with pytest.raises(data.DatasetCorruptError, match=str(missing)):
        data.load_dataset("imagenette", data_root=tmp_path)
    missing.rmdir()
    with pytest.raises(data.DatasetCorruptError, match=f"{missing} is missing"):
        data.load_dataset("imagenette", data_root=tmp_path)


def test_registered_id_trains_a_step_with_64_patches(tmp_path):
    write_imagenette(tmp_path, n_train=1, n_val=1)
    env = gym.make("patchenv/Imagenette-v1", data_root=tmp_path, **TINY_VIT)
    assert gym.spec("patchenv/Imagenette-v1").kwargs == {"dataset": "imagenette", "patch_size": 8}
    u = env.unwrapped
    assert u.dataset_name == "imagenette" and u.num_patches == 64 and u.data.image_size == 64
    env.reset(seed=0)
    mask = np.zeros(64, dtype=np.int8)
    mask[::2] = 1
    obs, reward, terminated, truncated, info = env.step(mask)
    assert obs.shape == (4, 64, 32) and np.isfinite(reward) and np.isfinite(info["loss"]) and info["kept"] == 32
    # Another side: N follows; a side the patch does not divide is refused.
    small = gym.make("patchenv/Imagenette-v1", data_root=tmp_path, image_size=32, n_patch_desired=8, **TINY_VIT)
    assert small.unwrapped.num_patches == 16
    with pytest.raises(ValueError, match="patch_size 8 must divide the image size 60"):
        gym.make("patchenv/Imagenette-v1", data_root=tmp_path, image_size=60, **TINY_VIT)


# -- image_size for the other sets and in the config ------------------------------------------
def test_image_size_none_keeps_the_other_sets_as_they_were(tmp_path):
    assert data.load_dataset("synthetic", image_size=None).train_x.shape[-1] == 32
    assert torch.equal(data.load_dataset("synthetic", image_size=48).train_x, data.synthetic(image_size=48).train_x)
    digits = data.load_dataset("digits")
    assert digits.image_size == 32 and torch.equal(data.load_dataset("digits", image_size=32).train_x, digits.train_x)
    assert data.load_dataset("digits", image_size=16).train_x.shape[1:] == (3, 16, 16)
    write_cifar10(tmp_path)
    native = data.load_dataset("cifar10", data_root=tmp_path)
    big = data.load_dataset("cifar10", data_root=tmp_path, image_size=64)
    assert big.train_x.shape == (40, 3, 64, 64) and big.train_x.dtype == torch.uint8
    assert torch.equal(big.train_y, native.train_y) and big.mean == data.CIFAR10_MEAN
    assert torch.equal(big.train_x, images.resize(native.train_x, 64))
    # _resize: flat images stay flat; halving a linear ramp averages neighbouring pixels
    # (bilinear, antialiased: weights 1/8, 3/8, 3/8, 1/8), exact away from the border.
    flat = torch.full((2, 3, 32, 32), 77, dtype=torch.uint8)
    assert bool((images.resize(flat, 64) == 77).all()) and bool((images.resize(flat, 16) == 77).all())
    ramp = (torch.arange(32) * 8).to(torch.uint8).expand(1, 3, 32, 32)
    half = images.resize(ramp, 16)
    assert half[0, 0, 0, 1:-1].tolist() == [16 * i + 4 for i in range(1, 15)]  # (8*2i + 8*(2i+1)) / 2
    for bad in (0, -8, 2.5, True):
        with pytest.raises(ValueError, match="image_size"):
            data.load_dataset("synthetic", image_size=bad)


def test_image_size_config_field_and_flag():
    assert EnvConfig().image_size is None and EnvConfig(image_size=np.int64(96)).image_size == 96
    for bad in (0, -1, 1.5, "64"):
        with pytest.raises(ValueError, match="image_size"):
            EnvConfig(image_size=bad)
    EnvConfig(image_size=30, patch_size=8)  # the divisibility needs the data set: checked by the env
    loaded = data.synthetic(n_train=8, n_test=4)
    EnvConfig(dataset=loaded, image_size=32)
    with pytest.raises(ValueError, match="image_size 64 differs"):
        EnvConfig(dataset=loaded, image_size=64)
    parser = add_env_arguments(argparse.ArgumentParser(prog="front-end"))
    assert parser.parse_args(["--image-size", "96"]).image_size == 96
    assert parser.parse_args([]).image_size is None


def test_names_match_torchvision():
    from pathlib import Path

    from torchvision.datasets import Imagenette

    assert imagenette.IMAGENETTE_WNIDS == tuple(sorted(Imagenette._WNID_TO_CLASS))  # its label order
    assert {k: folder for k, (folder, _) in imagenette.IMAGENETTE_ARCHIVES.items()} == \
        {k: Path(url).stem for k, (url, _) in Imagenette._ARCHIVES.items()}  # where its archives unpack

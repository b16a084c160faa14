"""What every section works with: the report's `Context` (configuration, device, the
clock of the whole-run budget) and the env and inputs a section builds on it."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import gymnasium as gym
import numpy as np
import torch

import patchenv  # noqa: F401  (registers the env ids)
from benchmarks.device.config import ENV_ID, IMAGE_SIZE, PATCH_SIZE, ReportConfig
from patchenv import data as data_mod
from patchenv.env.presets import PRESETS


@dataclass
class Context:
    cfg: ReportConfig
    device: torch.device
    start: float
    show: bool
    _images: Optional[data_mod.ImageData] = None

    def random_images(self) -> data_mod.ImageData:
        """Random images of CIFAR-10's shape, epoch_images of them (built once): the
        env-overhead and agentvit runs then have the epoch's steps per epoch."""
        if self._images is None:
            self._images = cifar_shaped(self.cfg.epoch_images, seed=self.cfg.seed)
        return self._images

    def remaining(self) -> float:
        return self.cfg.budget_s - (time.perf_counter() - self.start)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def vit(self) -> dict:
        vit = dict(PRESETS[self.cfg.preset])
        vit.pop("batch_size")
        return vit

    def model_config(self) -> dict:
        """SimpleViT's arguments for the preset on CIFAR-10-shaped images (the bare step's)."""
        return dict(image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, num_classes=10, channels=3, **self.vit())


def cifar_shaped(n_train: int, n_test: int = 1000, seed: int = 0) -> data_mod.ImageData:
    """Random uint8 images of CIFAR-10's shape (3x32x32, 10 classes) as an ImageData, with
    CIFAR-10's normalisation: the cost of a step does not depend on the pixel values."""
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_test
    x = torch.randint(0, 256, (n, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return data_mod.ImageData("synthetic-cifar10-shape", x[:n_train], y[:n_train], x[n_train:], y[n_train:], 10,
                              data_mod.CIFAR10_MEAN, data_mod.CIFAR10_STD)


def fixed_mask(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """A 0/1 int8 mask (N,) keeping k random patches."""
    mask = np.zeros(n, dtype=np.int8)
    mask[rng.choice(n, size=k, replace=False)] = 1
    return mask


def make_env(ctx: Context, images: data_mod.ImageData, batch_size: int, precision: str, mode: str, **kwargs):
    """The env on the report's device with the preset ViT; episodes never end on their own."""
    return gym.make(ENV_ID, dataset=images, batch_size=batch_size, patch_size=PATCH_SIZE, device=str(ctx.device),
                    amp="bf16" if precision == "bf16" else None, compile=mode == "compile",
                    cuda_graph=mode == "graph", episode_steps=10**9, **ctx.vit(), **kwargs)


def env_step(env, action):
    """env.step returning the next observation; a diverged step (episode over) continues
    the run with reset(), so timing goes on."""
    obs, _, terminated, truncated, _ = env.step(action)
    if terminated or truncated:
        obs, _ = env.reset()
    return obs

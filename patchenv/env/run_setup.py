"""RunSetup: what every training run of an env shares and never changes, built once from
an `EnvConfig`: the data set on the device (and its validation split, normalisation and
evaluation subset), the ViT's shape, the probe, and the FLOPs of a step by its length.

A single env builds one for its run; a population (`patchenv.population`) builds one for
all its runs, so the data set sits on the device once.
"""
from __future__ import annotations

from typing import Optional

import gymnasium as gym
import torch

from patchenv.data import ImageData, load_dataset, to_unit
from patchenv.data.splits import eval_subset, hold_out_validation
from patchenv.data.transforms import apply_augmentation
from patchenv.env.config import EnvConfig
from patchenv.env.device import resolve_device, use_cuda_graph
from patchenv.model.flops import step_flops


class RunSetup:
    """The fixed part of a training run (module docstring). Read-only after construction;
    raises a one-line ValueError for settings the data set cannot meet."""

    def __init__(self, cfg: EnvConfig, images: Optional[ImageData] = None):
        self.config = cfg
        self.device = resolve_device(cfg.device)
        self.cuda_graph = use_cuda_graph(cfg, self.device)
        # An observation that does not read the patch embedding (progress) lets the training
        # step embed the kept patches only (`SimpleViT.embed_kept`, eager or compiled); a
        # graphed step embeds them all.
        self.embeds_kept_only = cfg.obs_type == "progress" and not self.cuda_graph
        if images is None:
            images = cfg.dataset if isinstance(cfg.dataset, ImageData) else load_dataset(
                cfg.dataset, data_root=cfg.data_root, download=cfg.download, image_size=cfg.image_size)
        if images.image_size % cfg.patch_size != 0:
            raise ValueError(f"patch_size {cfg.patch_size} must divide the image size {images.image_size}")
        if cfg.reward == "progress" and cfg.val_fraction <= 0:
            gym.logger.warn("reward='progress' without a validation split: its probe is a fixed batch of training "
                            "images, not held out; build the env with val_fraction > 0 (e.g. 0.1) for a held-out probe")
        # The validation split leaves the training set before anything reads it; the
        # normalisation stays the data set's (its whole training set's mean and std).
        images, val = hold_out_validation(images, cfg.val_fraction)
        self.val = None if val is None else (val[0].to(self.device), val[1].to(self.device))
        if len(images.train_y) < cfg.batch_size:
            held = f" after the validation split of {len(val[1])}" if val is not None else ""
            raise ValueError(f"batch_size {cfg.batch_size} is larger than the training set "
                             f"({len(images.train_y)} images{held})")
        self.dataset_name = images.name
        self.data = images.to(self.device)
        self.mean = torch.tensor(images.mean, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(images.std, device=self.device).view(1, -1, 1, 1)

        self.num_patches = n = (images.image_size // cfg.patch_size) ** 2
        if n < 2:
            side = images.image_size
            raise ValueError(f"patch_size {cfg.patch_size} cuts the {side}x{side} images into {n} patch: there is "
                             f"nothing to choose; use a patch size of at most {side // 2} that divides {side}")
        if not 0 < cfg.n_patch_desired < n:
            raise ValueError(f"n_patch_desired must be an integer in [1, {n - 1}], got {cfg.n_patch_desired!r}")
        self.data_shape = dict(image_size=images.image_size, num_classes=images.num_classes,
                               channels=images.channels)
        self.vit_config = cfg.vit_config(**self.data_shape)
        self.batch_size = cfg.batch_size
        self.steps_per_epoch = len(images.train_y) // cfg.batch_size  # last partial batch dropped
        self.episode_steps = cfg.episode_steps if cfg.episode_steps is not None else self.steps_per_epoch
        # The run's planned length in steps, for schedules and progress (None: unknown).
        self.total_steps = (None if cfg.budget_epochs is None
                            else max(1, round(cfg.budget_epochs * self.steps_per_epoch)))
        eval_idx = eval_subset(len(images.test_y), cfg.eval_fraction)
        self.eval_idx = None if eval_idx is None else eval_idx.to(self.device)
        # The progress observation and reward read a fixed probe batch: the validation
        # split's first images (the training set's when there is none), normalised once.
        self.uses_probe = cfg.obs_type == "progress" or cfg.reward == "progress"
        self.probe: Optional[tuple[torch.Tensor, torch.Tensor]] = None
        self.probe_flops = 0
        if self.uses_probe:
            px, py = self.val if self.val is not None else (self.data.train_x, self.data.train_y)
            self.probe = self.normalize(px[:cfg.probe_size]), py[:cfg.probe_size]
            self.probe_flops = step_flops(self.vit_config, len(self.probe[1]), n)["forward"]
        self.flops_by_length: dict[int, int] = {}  # training FLOPs of a step by its length (cache)

    def training_batch(self, idx: torch.Tensor, draws: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        """The training images `idx` ((B,) indices on the device), augmented with `draws`
        (`draw_augmentation`'s, drawn by the run) and normalised, and their labels. The uint8
        images are cropped before they are scaled (a quarter of the bytes); `index_select`
        copies the same images as ``train_x[idx]`` without advanced indexing's overhead."""
        data = self.data
        x = apply_augmentation(data.train_x.index_select(0, idx), *draws)
        return self.normalize(x), data.train_y.index_select(0, idx)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images as the ViT sees them: in [0, 1], then the data set's normalisation
        (`patchenv.data.normalize`'s numbers, computed in place in the new float tensor, so
        the subtraction and the division allocate nothing: 0.17 instead of 0.23 ms for a
        64-image CPU batch)."""
        return to_unit(images).sub_(self.mean).div_(self.std)

    def fingerprint(self) -> dict:
        """The settings a checkpoint must agree with to be loaded."""
        return self.config.fingerprint(dataset_name=self.dataset_name, **self.data_shape)

    def train_flops(self, seq_len: int) -> int:
        """Training FLOPs of one step on (B, seq_len) tokens (`step_flops`), with the
        embedding of the patches the step embedded (all N, or the kept ones): host
        arithmetic on the shapes, cached per sequence length."""
        flops = self.flops_by_length.get(seq_len)
        if flops is None:
            embedded = seq_len if self.embeds_kept_only else None
            flops = self.flops_by_length[seq_len] = step_flops(self.vit_config, self.batch_size, seq_len,
                                                      embedded=embedded)["total"]
        return flops

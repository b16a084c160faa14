"""The fixed splits every run of a data set shares: the validation images ``val_fraction``
holds out of the training set, and the test subset ``eval_fraction`` keeps. Both are drawn
from CPU generators seeded with constants, so every run, seed and device sees the same images."""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from patchenv.data.images import ImageData

# Seeds the draw of the test subset that eval_fraction < 1 keeps.
EVAL_SUBSET_SEED = 0
# Seeds the validation split that val_fraction > 0 carves from the training set.
VAL_SPLIT_SEED = 0


def eval_subset(n_test: int, fraction: float) -> Optional[torch.Tensor]:
    """Indices (ascending, CPU) of the test images that ``eval_fraction`` keeps:
    round(fraction * n_test) of them, drawn by ``torch.randperm`` from a CPU generator
    seeded with `EVAL_SUBSET_SEED`; None for the whole split."""
    if fraction >= 1.0:
        return None
    k = round(fraction * n_test)
    if k < 1:
        raise ValueError(f"eval_fraction {fraction} keeps no image of the {n_test}-image test split")
    perm = torch.randperm(n_test, generator=torch.Generator().manual_seed(EVAL_SUBSET_SEED))
    return perm[:k].sort().values


def val_split(n_train: int, fraction: float) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """(train indices, validation indices), each ascending, CPU, disjoint and together
    range(n_train): the validation split ``val_fraction`` holds out, round(fraction *
    n_train) images (Python's round, half to even), the first of a ``torch.randperm``
    drawn from a CPU generator seeded with `VAL_SPLIT_SEED`; None for fraction 0."""
    if fraction <= 0.0:
        return None
    k = round(fraction * n_train)
    if not 0 < k < n_train:
        what = "no image" if k < 1 else "every image"
        raise ValueError(f"val_fraction {fraction} holds out {what} of the {n_train}-image training set")
    perm = torch.randperm(n_train, generator=torch.Generator().manual_seed(VAL_SPLIT_SEED))
    return perm[k:].sort().values, perm[:k].sort().values


def hold_out_validation(images: ImageData, fraction: float) -> tuple[ImageData, Optional[tuple[torch.Tensor, torch.Tensor]]]:
    """(the images to train on, the validation (images, labels) or None): `val_split`
    applied. The validation split leaves the training set before anything reads it; the
    normalisation stays the data set's (its whole training set's mean and std)."""
    split = val_split(len(images.train_y), fraction)
    if split is None:
        return images, None
    train_idx, val_idx = split
    val = (images.train_x[val_idx], images.train_y[val_idx])
    return dataclasses.replace(images, train_x=images.train_x[train_idx], train_y=images.train_y[train_idx]), val

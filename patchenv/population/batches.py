"""The next batches of a population's runs, loaded as one: each run moves its own data
position and draws its own augmentation (from its own generator, in the single env's
order), then one gather, one augmentation and one normalisation serve every run. The
images are those each run's single env would load (the same arithmetic, image by image)."""
from __future__ import annotations

from typing import Sequence

import torch

from patchenv.data import normalize, to_unit
from patchenv.data.transforms import apply_augmentation, draw_augmentation
from patchenv.env.batches import batch_indices, next_position


def advance_all(runs: Sequence) -> None:
    """Every run in `runs` (single envs sharing one data set) to its next batch; their
    embeddings and observations are the population's to make."""
    if not runs:
        return
    first = runs[0]
    b = first.batch_size
    idx, draws = [], []
    for run in runs:
        next_position(run)
        idx.append(batch_indices(run))
        draws.append(draw_augmentation(b, first.device, run._data_gen))
    idx = torch.cat(idx)
    dy, dx, flip = (torch.cat(d) for d in zip(*draws))
    x = to_unit(apply_augmentation(first.data.train_x[idx], dy, dx, flip))  # as the single env: uint8 first
    x = normalize(x, first._mean, first._std)
    y = first.data.train_y[idx]
    for k, run in enumerate(runs):
        run._batch_x, run._batch_y = x[k * b:(k + 1) * b], y[k * b:(k + 1) * b]

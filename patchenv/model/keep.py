"""`Keep`: an action parsed once into what every consumer needs.

The env validates an agent's action a single time (`patchenv.env.action`) and hands the
result to the ViT (``index``), the renderer and the runner's patch statistics (``mask``)
and the step's counters (``per_image``): nobody interprets a raw mask again.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Union

import numpy as np
import torch

from patchenv.model.vit import PaddedKeep


@dataclass(frozen=True)
class Keep:
    """Which patches of each of the B images the transformer sees.

    - ``index``: the ViT's ``keep`` argument (`patchenv.model.vit.select_tokens`), on the
      device: None (every patch), a (K,) index tensor shared by the batch, a (B, K) index
      tensor (equal counts per image: no padding), or a `PaddedKeep` (unequal counts:
      rows padded on the host to the largest count, the filler hidden from attention by a
      key mask);
    - ``mask``: the same choice on the host, (B, N) bool numpy, True = kept;
    - ``per_image``: patches kept per image, (B,) int64 numpy.

    The counts below are computed once (`cached_property`: a population asks for them for
    every run at every step).
    """

    index: Union[None, torch.Tensor, PaddedKeep]
    mask: np.ndarray
    per_image: np.ndarray

    @cached_property
    def tokens(self) -> int:
        """Real tokens the transformer processes."""
        return int(self.per_image.sum())

    @cached_property
    def longest(self) -> int:
        """The sequence length the transformer runs on: the largest count kept."""
        return int(self.per_image.max())

    @cached_property
    def padding(self) -> int:
        """Filler slots of uneven per-image masks (rows padded to `longest`)."""
        return len(self.per_image) * self.longest - self.tokens

    @cached_property
    def kept(self) -> float:
        """Mean patches kept per image."""
        return float(self.per_image.mean())

    def position_counts(self) -> np.ndarray:
        """(N,) int64: for each patch position, how many of the B images kept it."""
        return self.mask.sum(axis=0, dtype=np.int64)


def keep_all(batch_size: int, num_patches: int) -> Keep:
    """Every patch of every image."""
    return Keep(None, np.ones((batch_size, num_patches), dtype=bool),
                np.full(batch_size, num_patches, dtype=np.int64))

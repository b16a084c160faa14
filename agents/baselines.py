"""Baselines without learning: ``all`` (no selection) and ``random`` (PatchDropout)."""
from __future__ import annotations

from typing import Optional

import numpy as np

from agents import register
from agents.base import Agent


@register("all")
class AllPatches(Agent):
    """Keep every patch: the plain ViT, the reference every selector is compared with."""

    obs_type = "pooled"  # the cheapest observation; this agent ignores it

    def __init__(self, selection: str = "batch"):
        self.selection = selection
        if selection == "image":
            self.obs_type = "attention"  # (B, N): gives the batch size

    def act(self, obs, explore: bool = False):
        shape = (obs.shape[0],) if self.selection == "batch" else tuple(obs.shape[:2])
        return np.ones(shape, dtype=np.int8)

    def config(self) -> dict:
        return {"selection": self.selection}


@register("random")
class RandomPatches(Agent):
    """A fresh uniformly random set of ``k`` patches every step: the PatchDropout baseline
    (Liu et al. 2022). ``k=None`` keeps the env's ``n_patch_desired`` (the paper's 30);
    per image with ``selection="image"``."""

    obs_type = "pooled"

    def __init__(self, k: Optional[int] = None, selection: str = "batch", seed: int = 0):
        self.k = k
        self.selection = selection
        self.seed = seed
        if selection == "image":
            self.obs_type = "attention"
        self._rng = np.random.default_rng(seed)

    def act(self, obs, explore: bool = False):
        n = obs.shape[0] if self.selection == "batch" else obs.shape[1]
        k = self.k or self.n_patch_desired or n // 2
        rows = 1 if self.selection == "batch" else obs.shape[0]
        order = np.argsort(self._rng.random((rows, n)), axis=1)[:, :k]
        mask = np.zeros((rows, n), dtype=np.int8)
        np.put_along_axis(mask, order, 1, axis=1)
        return mask[0] if self.selection == "batch" else mask

    def config(self) -> dict:
        # The generator's state travels too, so a loaded agent draws the masks this one
        # would have drawn next (a resumed run continues exactly).
        return {"k": self.k, "selection": self.selection, "seed": self.seed,
                "rng_state": self._rng.bit_generator.state}

    def load(self, path):
        super().load(path)
        self._rng = np.random.default_rng(self.seed)
        state = self.__dict__.pop("rng_state", None)
        if state is not None:
            self._rng.bit_generator.state = state
        return self

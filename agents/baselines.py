"""Baselines without learning: ``all`` (no selection) and ``random`` (PatchDropout)."""
from __future__ import annotations

from typing import Optional

import numpy as np

from agents.base import NO_PROBE, Agent, KeepsK


class AllPatches(Agent):
    """Keep every patch: the plain ViT, the reference every selector is compared with.
    It ignores the observation, so it asks for the cheapest one that gives the mask's
    shape: pooled (N, D) per batch, attention (B, N) per image."""

    name = "all"

    def act(self, obs, explore: bool = False):
        shape = (obs.shape[0],) if self.selection == "batch" else tuple(obs.shape[:2])
        return np.ones(shape, dtype=np.int8)


class RandomPatches(KeepsK):
    """A fresh uniformly random set of ``k`` patches every step: the PatchDropout baseline
    (Liu et al. 2022). ``k=None`` keeps the env's ``n_patch_desired`` (the paper's 30);
    per image with ``selection="image"``. It reads no observation, so it asks for the
    progress one without probes: the env then embeds only the kept patches (the schedules,
    its subclasses, too)."""

    name = "random"
    obs_types = {"batch": "progress", "image": "progress"}

    def __init__(self, *, k: Optional[int] = None, selection: str = "batch", seed: int = 0):
        super().__init__(k=k, selection=selection, seed=seed)
        self._rng = np.random.default_rng(self.seed)

    def env_kwargs(self) -> dict:
        return {**super().env_kwargs(), "probe_every": NO_PROBE}

    def act(self, obs, explore: bool = False):
        if self.num_patches is not None:  # set up: the env's N and B (its observation says neither)
            n, b = self.num_patches, self.batch_size
        elif np.ndim(obs) == 2:  # not set up, given a patch observation: pooled (N, D) or (B, N)
            n, b = (obs.shape[0], 1) if self.selection == "batch" else (obs.shape[1], obs.shape[0])
        else:
            raise ValueError(f"agent {self.name!r}: call setup(env) first, or pass a patch observation "
                             f"((N, D) per batch, (B, N) per image), got shape {np.shape(obs)}")
        k = self.current_k(n)
        rows = 1 if self.selection == "batch" else b
        order = np.argsort(self._rng.random((rows, n)), axis=1)[:, :k]
        mask = np.zeros((rows, n), dtype=np.int8)
        np.put_along_axis(mask, order, 1, axis=1)
        return mask[0] if self.selection == "batch" else mask

    # The generator's state travels too, so a loaded agent draws the masks this one would
    # have drawn next (a resumed run continues exactly).
    def state_dict(self) -> dict:
        return {**super().state_dict(), "rng": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._rng.bit_generator.state = state["rng"]

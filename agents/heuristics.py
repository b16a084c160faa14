"""Training-free selectors: keep the top-k patches by a score read off the observation.

- ``norm_topk``: L2 norm of each patch's embedding (with position embedding). Patches
  that carry more signal after the patch LayerNorm + projection score higher.
- ``attention_topk``: the paper's own state, the first attention block's output averaged
  over D, used directly as an importance score with no learning.

Batch selection scores the batch mean; per-image selection scores each image. Both are
deterministic: ``seed`` is accepted (every agent takes one) and unused.
"""
from __future__ import annotations

import numpy as np

from agents.base import KeepsK, topk_mask
from patchenv.arrays import to_numpy


class NormTopK(KeepsK):
    """Keep the k patches whose embeddings have the largest L2 norm."""

    name = "norm_topk"
    # pooled (N, D) is enough for one batch mask; per image needs (B, N, D).
    obs_types = {"batch": "pooled", "image": "embeddings"}

    def act(self, obs, explore: bool = False):
        scores = np.linalg.norm(to_numpy(obs), axis=-1)  # (N,) or (B, N)
        return topk_mask(scores, self.current_k(scores.shape[-1]))


class AttentionTopK(KeepsK):
    """Keep the k patches with the largest attention state (the paper's observation)."""

    name = "attention_topk"
    obs_types = {"batch": "attention", "image": "attention"}

    def act(self, obs, explore: bool = False):
        scores = to_numpy(obs)  # (B, N)
        if self.selection == "batch":
            scores = scores.mean(axis=0)
        return topk_mask(scores, self.current_k(scores.shape[-1]))

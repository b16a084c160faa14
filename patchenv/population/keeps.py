"""The actions of a population's runs, parsed one run at a time (the single env's
`parse_action`, with each run's own generator) and joined into the one token selection the
batched ViT runs on: an index (E, B, L) of kept patches in patch order, L the largest
count kept by any image of any training run, and a key mask (E, B, L) where rows keep
fewer than L (None when none does).

Padding rows to L is the price of one computation for all runs: a run keeping 8 patches
beside one keeping 64 runs on 64 slots, 56 of them hidden. Each run's ``info`` still counts
the FLOPs and padding as its single env does (its own largest count, and with the progress
observation the embedding of its kept patches only, though the stacked step embeds every
patch), so results do not depend on the population a run was in;
`PopulationEnv.last_step_tokens` says what the population really ran.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from patchenv.env.action import parse_action
from patchenv.model.keep import Keep


def parse_actions(actions, members: Sequence, active: np.ndarray) -> list[Optional[Keep]]:
    """Each active run's `Keep` (None for the others). All or nothing: a bad action of
    any run raises (naming the run) with every run's generator as it was."""
    saved = [m.np_random.bit_generator.state for m in members]
    keeps: list[Optional[Keep]] = []
    try:
        for i, m in enumerate(members):
            keeps.append(parse_action(actions[i], m.selection, m.num_patches, m.batch_size, m.device, m.np_random)
                         if active[i] else None)
    except (TypeError, ValueError) as e:
        for m, state in zip(members, saved):
            m.np_random.bit_generator.state = state
        raise type(e)(f"run {len(keeps)}: {e}") from None
    return keeps


def join(keeps: Sequence[Optional[Keep]], batch_size: int, num_patches: int,
         device: torch.device) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor], int]:
    """(index (E, B, L) or None, key_mask (E, B, L) or None, L). A run without a Keep (not
    training this step) gets the first L patches: computed, and discarded."""
    real = [k for k in keeps if k is not None]
    longest = max(k.longest for k in real) if real else 1
    if len(real) == len(keeps) and all(k.tokens == batch_size * num_patches for k in real):
        return None, None, num_patches  # every run keeps every patch: no gather at all
    # A run without a Keep computes on its first L patches (every row keeps them).
    idle_mask = np.zeros((batch_size, num_patches), dtype=bool)
    idle_mask[:, :longest] = True
    idle_counts = np.full(batch_size, longest, dtype=np.int64)
    masks = np.stack([idle_mask if k is None else k.mask for k in keeps])  # (E, B, N)
    counts = np.stack([idle_counts if k is None else k.per_image for k in keeps])  # (E, B)
    # Stable: each row's kept patches first, in patch order (as the single env's ViT sees them).
    index = np.argsort(~masks, axis=-1, kind="stable")[..., :longest]
    real_token = np.arange(longest) < counts[..., None]
    key_mask = None if real_token.all() else torch.from_numpy(real_token).to(device)
    return torch.from_numpy(np.ascontiguousarray(index)).to(device), key_mask, longest

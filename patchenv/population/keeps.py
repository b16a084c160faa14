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

A run that does not train this step (it autoresets) still shapes the step as its action
asks (its counts are read, nothing is drawn or applied): the shapes of the batched
computation then depend on the actions alone, not on which runs happen to reset, so a run
that diverges and resets leaves every other run's numbers bit for bit those of a
population in which it did not diverge.
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


def idle_counts(actions, members: Sequence, idle: np.ndarray) -> list[Optional[np.ndarray]]:
    """For each run where `idle` (it does not train this step), the (B,) patches per image
    its action asks for, read without drawing from its generator; None for the others, and
    for an action that does not parse (an idle run's action is ignored, whatever it is)."""
    counts: list[Optional[np.ndarray]] = []
    for i, m in enumerate(members):
        if not idle[i]:
            counts.append(None)
            continue
        try:  # a count's patches are drawn at random, its counts are not: a throwaway generator
            keep = parse_action(actions[i], m.selection, m.num_patches, m.batch_size, torch.device("cpu"),
                                np.random.default_rng(0))
            counts.append(keep.per_image)
        except (TypeError, ValueError, IndexError):
            counts.append(None)
    return counts


def join(keeps: Sequence[Optional[Keep]], batch_size: int, num_patches: int, device: torch.device,
         idle: Optional[Sequence[Optional[np.ndarray]]] = None
         ) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor], int]:
    """(index (E, B, L) or None, key_mask (E, B, L) or None, L). A run without a Keep (not
    training this step) computes, and its result is discarded: on its first `idle` counts
    of patches per image where given (`idle_counts`), else on the first L patches."""
    idle = list(idle) if idle is not None else [None] * len(keeps)
    shaped = [k.per_image if k is not None else c for k, c in zip(keeps, idle)]
    given = [c for c in shaped if c is not None]
    longest = int(max(c.max() for c in given)) if given else 1
    if len(given) == len(keeps) and all(int(c.sum()) == batch_size * num_patches for c in given):
        return None, None, num_patches  # every run keeps every patch: no gather at all
    filler = np.full(batch_size, longest, dtype=np.int64)  # an idle run without counts: the first L patches
    counts = np.stack([filler if c is None else c for c in shaped])  # (E, B)
    first = np.arange(num_patches) < counts[:, :, None]  # an idle run's patches: the first of each row
    masks = np.stack([k.mask if k is not None else first[i] for i, k in enumerate(keeps)])  # (E, B, N)
    # Stable: each row's kept patches first, in patch order (as the single env's ViT sees them).
    index = np.argsort(~masks, axis=-1, kind="stable")[..., :longest]
    real_token = np.arange(longest) < counts[..., None]
    key_mask = None if real_token.all() else torch.from_numpy(real_token).to(device)
    return torch.from_numpy(np.ascontiguousarray(index)).to(device), key_mask, longest

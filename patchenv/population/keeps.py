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

A run that does not train still fills its slot, and the slot's shape decides the padded
length L and whether a key mask is needed, which decide how every run's sums are grouped
(their last bits). A run restarting after a divergence ended its episode early fills its
slot as its posted action asks (`restart_counts`): the slot then has the shape it would
have had, had the run not diverged and trained, so the other runs compute exactly what
they would have. Any other idle run (an autoreset after a full episode, a run standing
still) fills it with the first L patches, L set by the training runs: a population in
which nothing diverges computes what it always did.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from patchenv.arrays import to_device
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


def restart_counts(actions, members: Sequence, restarting: np.ndarray) -> list[Optional[np.ndarray]]:
    """For each run where `restarting` (its episode ended early, by a divergence, and it
    resets this step), the (B,) patches per image its action asks for; None for the other
    runs and for an action that does not parse (the action of a resetting run is ignored,
    whatever it is). Nothing is drawn from the run's generator: a count's patches are
    random, its counts are not, so a throwaway generator parses it."""
    counts: list[Optional[np.ndarray]] = []
    for i, m in enumerate(members):
        keep = None
        if restarting[i]:
            try:
                keep = parse_action(actions[i], m.selection, m.num_patches, m.batch_size, torch.device("cpu"),
                                    np.random.default_rng(0))
            except (TypeError, ValueError, IndexError):
                keep = None
        counts.append(None if keep is None else keep.per_image)
    return counts


def join(keeps: Sequence[Optional[Keep]], batch_size: int, num_patches: int, device: torch.device,
         idle_counts: Optional[Sequence[Optional[np.ndarray]]] = None
         ) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor], int]:
    """(index (E, B, L) or None, key_mask (E, B, L) or None, L). A run without a Keep (not
    training this step) is computed and discarded: on the first `idle_counts[i]` patches
    of each image where given (`restart_counts`), else on the first L patches."""
    idle_counts = [None] * len(keeps) if idle_counts is None else list(idle_counts)
    shaped = [k.per_image if k is not None else c for k, c in zip(keeps, idle_counts)]  # (B,) or None
    # A Keep's longest and tokens are cached: asked for every run at every step.
    longest = max([k.longest for k in keeps if k is not None]
                  + [int(c.max()) for k, c in zip(keeps, idle_counts) if k is None and c is not None], default=1)
    full = batch_size * num_patches
    if all(k.tokens == full if k is not None else c is not None and int(c.sum()) == full
           for k, c in zip(keeps, idle_counts)):
        return None, None, num_patches  # every slot keeps every patch: no gather at all
    # An idle slot computes on the first patches of each image: its given counts, else L.
    counts = np.stack([np.full(batch_size, longest, dtype=np.int64) if c is None else c for c in shaped])  # (E, B)
    first = np.arange(num_patches) < counts[:, :, None]  # (E, B, N)
    masks = np.stack([first[i] if k is None else k.mask for i, k in enumerate(keeps)])  # (E, B, N)
    # Stable: each row's kept patches first, in patch order (as the single env's ViT sees them).
    index = np.argsort(~masks, axis=-1, kind="stable")[..., :longest]
    real_token = np.arange(longest) < counts[..., None]
    key_mask = None if real_token.all() else to_device(real_token, device)
    return to_device(index, device), key_mask, longest

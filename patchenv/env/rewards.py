"""The reward, AgentViT's (docs/AGENTVIT.md), and the hook to plug in another.

R = loss_weight * L(ref) / L(t)  +  patch_weight * (-|z - z*| / z*)

L(t) is this step's training loss; L(ref) the training loss of the run's step
`loss_ref_step` (counted from 1; by default 1, the run's first step, while AgentViT uses
the notebook's: its first rewarded batch, `frequency`); a step before it is its own
reference (loss term 1). z is the number of dropped patches (mean per image in per-image
mode), z* = N - n_patch_desired. The paper's code uses weights (1, 20); its README's
`alpha` gives (alpha, 1 - alpha).

A custom reward is any callable ``reward_fn(stats: StepStats) -> float``. The terms and
the reward of E steps at once are computed in `patchenv.env.outcome`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np


@dataclass(frozen=True)
class StepStats:
    """What one training step measured; handed to the reward function."""

    loss: float  # this step's training loss, L(t)
    loss_ref: float  # L(ref): the loss of step loss_ref_step, or this step's own before it
    accuracy: float  # batch accuracy, fraction in [0, 1]
    kept: float  # patches kept per image (mean over the batch)
    kept_per_image: Optional[np.ndarray]  # (B,) in per-image mode, else None
    num_patches: int  # N
    n_patch_desired: int  # the target count of kept patches
    loss_term: float
    patch_term: float


RewardFn = Callable[[StepStats], float]


def weights_from_alpha(alpha: float) -> tuple[float, float]:
    """The README's `alpha`: (loss_weight, patch_weight) = (alpha, 1 - alpha)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return float(alpha), 1.0 - float(alpha)


def checked_reward(reward_fn: RewardFn, stats: StepStats, diverged: bool, global_step: int) -> float:
    """``reward_fn(stats)``, checked. It runs after the training step: when it fails, the
    step has been applied and the env is consistent (counters, pending batch, episode
    state), so the caller gets the error and the next ``step`` goes on."""
    try:
        value = reward_fn(stats)
    except Exception as e:
        raise RuntimeError(f"reward_fn raised {type(e).__name__}: {e} (the training step {global_step} "
                           f"was applied; the env is consistent and the next step() continues)") from e
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"reward_fn must return a real number, got {type(value).__name__} (the training step "
                        f"{global_step} was applied)")
    value = float(value)
    if not math.isfinite(value):
        if diverged:
            return 0.0  # a diverged step may give a non-finite reward; it ends the episode anyway
        raise ValueError(f"reward_fn must return a finite number, got {value} (the training step "
                         f"{global_step} was applied)")
    return value

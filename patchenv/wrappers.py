"""Wrappers that adapt PatchSelectionEnv to libraries with narrower space support."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class FlattenMultiBinaryAction(gym.ActionWrapper):
    """Present a (B, N) MultiBinary action as MultiBinary(B * N).

    Stable-Baselines3 rejects multi-dimensional MultiBinary spaces, so per-image selection
    (``selection="image"``) needs this wrapper for SB3 agents."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.action_space
        if not isinstance(space, spaces.MultiBinary):
            raise TypeError(f"FlattenMultiBinaryAction needs a MultiBinary action space, got {space}")
        self._shape = tuple(np.atleast_1d(space.n))
        self.action_space = spaces.MultiBinary(int(np.prod(self._shape)))

    def action(self, action):
        return np.asarray(action).reshape(self._shape)

    def reverse_action(self, action):
        return np.asarray(action).reshape(-1)


class NonEmptyMask(gym.ActionWrapper):
    """Turn a mask (or a per-image row) that keeps no patch into one that keeps every patch.

    The env rejects an empty mask (there would be nothing to train on). A policy that
    samples each patch independently (SB3's Bernoulli for MultiBinary) can draw one, and
    SB3 steps the env itself, so the guard sits in front of the env. Keeping every patch
    is the "no selection" fallback; it changes nothing for a non-empty mask."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        if not isinstance(env.action_space, spaces.MultiBinary):
            raise TypeError(f"NonEmptyMask needs a MultiBinary action space, got {env.action_space}")

    def action(self, action):
        return ensure_nonempty(action)


def ensure_nonempty(action) -> np.ndarray:
    """A copy of a mask (N,) or (B, N) whose all-zero rows keep every patch. Other values
    pass through unchanged, so the env still rejects a malformed mask."""
    mask = np.array(action, copy=True)
    if mask.ndim == 0:
        return mask
    empty = ~(mask != 0).any(axis=-1)
    if np.any(empty):
        mask[empty] = 1
    return mask

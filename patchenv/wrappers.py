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

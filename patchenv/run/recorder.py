"""The runner's view of every step, whatever loop the agent runs."""
from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np

from patchenv.env.outcome import step_on_host
from patchenv.run.protocol import RunnableEnv
from patchenv.run.records import RunState


class Recorder(gym.Wrapper):
    """Adds each step to the runner's sums and logs, whatever loop the agent runs (its own
    Gymnasium loop or Stable-Baselines3's), without touching the env's timing."""

    def __init__(self, env: gym.Env, state: RunState, on_step: Callable[[float, dict], None]):
        super().__init__(env)
        self._state, self._on_step = state, on_step

    def step(self, action):
        # The runner's sums and logs are Python numbers: a tensor_obs env's 0-d tensors are
        # read here, once per step (the agent gets what the numpy path gives).
        obs, *step = self.env.step(action)
        reward, terminated, truncated, info = step_on_host(*step)
        s = self._state
        self._count_kept(int(info.get("steps", 1)))
        s.episode_return += reward
        ended = s.episode_return if (terminated or truncated) else None
        if ended is not None:
            s.episode_return = 0.0
        s.epoch.add(reward, info, ended)
        s.total.add(reward, info, None)
        self._on_step(reward, info)
        return obs, reward, terminated, truncated, info

    def _count_kept(self, steps: int) -> None:
        """Where the agent keeps patches: per position, how many images kept it (from the
        step's parsed action, `RunnableEnv.last_keep`, the same in each of its `steps`)."""
        u: RunnableEnv = self.env.unwrapped
        s = self._state
        if u.selection == "count":  # a count, not positions: the env drew them uniformly at random
            return
        per_position = u.last_keep.position_counts()
        if s.keep_counts is None:
            s.keep_counts = np.zeros(u.num_patches, dtype=np.int64)
        s.keep_counts += steps * per_position  # in place: this runs every step
        s.keep_images += steps * u.batch_size

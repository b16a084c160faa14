"""A `PopulationEnv` as Stable-Baselines3's `VecEnv`: E training runs, one batched model,
for any SB3 algorithm that takes several envs (PPO, A2C, DQN, ...).

    from stable_baselines3 import PPO
    from agents.sb3_population import PopulationVecEnv
    venv = PopulationVecEnv(gym.make_vec("patchenv/Digits-v1", num_envs=8,
                                         vectorization_mode="vector_entry_point", obs_type="pooled"))
    PPO("MlpPolicy", venv, n_steps=16).learn(1024)

The two APIs differ in how an episode ends: Gymnasium's vector env resets a finished run
on the *next* step (NEXT_STEP), SB3 expects the reset at once, in the same step, with the
last observation in ``info["terminal_observation"]`` and ``info["TimeLimit.truncated"]``
for a truncation. The adapter resets the finished runs right after the step
(``reset(options={"reset_mask": done})``: each run continues, as a single env's
``reset()`` does). ``seed(s)`` seeds the next reset: run i with s + i.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from patchenv.population import PopulationEnv


class PopulationVecEnv(VecEnv):
    # The options a finished run is reset with (`agents.keeprate_task.PopulationRuns`: a fresh run).
    reset_options: dict = {}

    def __init__(self, population: PopulationEnv, action_space=None):
        population = population.unwrapped
        if not isinstance(population, PopulationEnv):
            raise TypeError(f"PopulationVecEnv wraps a patchenv PopulationEnv, got {type(population).__name__}")
        if population.config.tensor_obs:
            raise ValueError("PopulationVecEnv needs numpy observations: build the population with tensor_obs=False")
        self.population = population
        super().__init__(population.num_envs, population.single_observation_space,
                         action_space if action_space is not None else population.single_action_space)
        self.render_mode = population.render_mode
        self._actions: Optional[np.ndarray] = None

    def reset(self):
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        obs, infos = self.population.reset(seed=seeds, options=dict(self.reset_options))
        self.reset_infos = self._split(infos)
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        obs, rewards, terminated, truncated, infos = self.population.step(self._actions)
        infos = self._split(infos)
        dones = terminated | truncated
        return self._restart(obs, dones, truncated & ~terminated, infos), rewards.astype(np.float32), dones, infos

    def _restart(self, obs: np.ndarray, dones: np.ndarray, time_limit: np.ndarray, infos: list[dict]) -> np.ndarray:
        """SB3 resets a finished env at once: keep each finished run's last observation (and
        whether a time limit ended it) in its info, reset those runs, and return the
        observations with theirs replaced by the reset ones."""
        if not dones.any():
            return obs
        for i in np.flatnonzero(dones):
            infos[i]["terminal_observation"] = obs[i].copy()
            infos[i]["TimeLimit.truncated"] = bool(time_limit[i])
        reset_obs, reset_infos = self.population.reset(seed=self._restart_seeds(dones),
                                                       options={**self.reset_options, "reset_mask": dones})
        obs = obs.copy()
        obs[dones] = reset_obs[dones]
        for i, info in enumerate(self._split(reset_infos)):
            if dones[i]:
                self.reset_infos[i] = info
        return obs

    def _restart_seeds(self, dones: np.ndarray) -> Optional[list]:
        """The seeds the finished runs restart with (None: each run's generator goes on)."""
        return None

    def close(self) -> None:
        self.population.close()

    def get_images(self) -> Sequence[Optional[np.ndarray]]:
        return list(self.population.render())

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self.population.runs[i], attr_name) for i in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        raise AttributeError("PopulationVecEnv's runs share one model: set their settings when building the population")

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        return [getattr(self.population.runs[i], method_name)(*method_args, **method_kwargs)
                for i in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]  # the runs are bare envs

    def _split(self, infos: dict) -> list[dict]:
        """Gymnasium's dict of arrays (with ``_key`` masks) as SB3's list of dicts."""
        out: list[dict] = [{} for _ in range(self.num_envs)]
        for key, values in infos.items():
            if key.startswith("_"):
                continue
            present = infos.get(f"_{key}", np.ones(self.num_envs, dtype=bool))
            for i in np.flatnonzero(present):
                value = values[i]
                out[i][key] = value.item() if isinstance(value, np.generic) else value  # plain floats, as a single env
        return out

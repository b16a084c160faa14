"""keeprate's proxy task on a population: `WholeRuns` for E training runs at once, as an
SB3 `VecEnv` (``python -m agents.keeprate --population E``).

Each of the E runs is what `agents.keeprate.WholeRuns` makes of one single env:
- one episode is one whole training run (a fresh ViT at every reset);
- one action is a count level held for ``decide_every`` env steps;
- the reward is the objective's over those steps.

The runs' training steps are batched into one model (`patchenv.population.PopulationEnv`).
A run whose episode ends inside a decision (the budget's end, divergence, the target
reached at a decision's end) stands still for the rest of that decision (`step_runs`).
It then starts a fresh run, as SB3 expects of a finished env: at once, with the last
observation in ``info["terminal_observation"]``. Run i is the single env seeded with
seed + i, so a test can step this beside ``DummyVecEnv`` of `WholeRuns` over single envs
and get the same numbers.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

import gymnasium as gym
from agents.keeprate import _PROBE_ACCURACY, count_for
from patchenv.model.flops import step_flops
from patchenv.population import PopulationEnv


class PopulationRuns(VecEnv):
    def __init__(self, population: PopulationEnv, levels: int, decide_every: int, target: Optional[float] = None):
        self.population = population = population.unwrapped
        run = population.runs[0]
        if run.selection != "count" or run.obs_type != "progress" or run.total_steps is None:
            raise ValueError("PopulationRuns needs a population with selection='count', obs_type='progress' and "
                             "budget_epochs set")
        super().__init__(population.num_envs, population.single_observation_space, gym.spaces.Discrete(levels))
        self.levels, self.decide_every, self.target = levels, decide_every, target
        self._full_step = step_flops(run.vit_config, run.batch_size, run.num_patches)["total"]
        self._decisions = math.ceil(run.total_steps / decide_every)
        self._actions: Optional[np.ndarray] = None

    def reset(self):
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        obs, _ = self.population.reset(seed=seeds, options={"new_run": True})
        self._reset_seeds()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs)

    def step_wait(self):
        pop, e = self.population, self.num_envs
        counts = [count_for(int(level), self.levels, pop.runs[0].num_patches) - 1 for level in self._actions]
        total, flops = np.zeros(e), np.zeros(e)
        ended = np.zeros(e, dtype=bool)
        budget_end = np.zeros(e, dtype=bool)  # the run's planned steps are done (a truncation)
        obs = None
        infos: list[dict] = [{} for _ in range(e)]
        for _ in range(self.decide_every):
            moving = ~ended
            if not moving.any():
                break
            obs, rewards, terminated, truncated, step_infos = pop.step_runs(counts, moving)
            for i in np.flatnonzero(moving):
                total[i] += rewards[i]
                flops[i] += step_infos[i]["flops"]
                infos[i] = step_infos[i]
                if terminated[i]:
                    ended[i] = True
                elif pop.runs[i].global_step >= pop.runs[i].total_steps:
                    ended[i] = budget_end[i] = True
            epoch_end = truncated & moving & ~ended
            if epoch_end.any():  # an epoch ended; the run goes on
                obs, _ = pop.reset(options={"reset_mask": epoch_end})
        obs = np.array(obs, copy=True)
        rewards = total.copy()
        dones = ended.copy()
        if self.target is not None:  # objective "target" (agents.keeprate.WholeRuns.step)
            rewards = -flops / (self.decide_every * self._full_step)
            reached = obs[:, _PROBE_ACCURACY] >= self.target
            rewards = rewards - np.where(~reached & budget_end, self._decisions, 0.0)
            dones = ended | reached
        for i in np.flatnonzero(dones):
            infos[i]["terminal_observation"] = obs[i].copy()
            infos[i]["TimeLimit.truncated"] = bool(budget_end[i] and not (self.target is not None and
                                                                            obs[i, _PROBE_ACCURACY] >= self.target))
        if dones.any():  # SB3 resets a finished env at once: a fresh run
            fresh, _ = pop.reset(options={"new_run": True, "reset_mask": dones})
            obs[dones] = fresh[dones]
        return obs, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.population.close()

    def get_attr(self, attr_name: str, indices=None) -> list:
        return [getattr(self.population.runs[i], attr_name) for i in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value, indices=None) -> None:
        raise AttributeError("the runs of a population share one model: set their settings when building it")

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list:
        return [getattr(self.population.runs[i], method_name)(*method_args, **method_kwargs)
                for i in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self):
        return list(self.population.render())

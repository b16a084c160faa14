"""keeprate's proxy task, the problem its policy learns on: whole training runs, one
decision (a count level held for ``decide_every`` env steps) at a time.

- `WholeRuns`: the task over one single env, a `gym.Wrapper` (what SB3 trains on by default);
- `PopulationRuns`: the same task for E runs at once, an SB3 `VecEnv` over a
  `patchenv.population.PopulationEnv` (``python -m agents.keeprate --population E``). The
  runs' training steps are batched into one model. A run whose episode ends inside a
  decision (the budget's end, divergence) stands still for the rest of it (`step_runs`),
  then starts a fresh run at once, as SB3 expects of a finished env, with the last
  observation in ``info["terminal_observation"]``. Run i is the single env seeded with
  seed + i: a test steps it beside ``DummyVecEnv`` of `WholeRuns` and gets the same numbers.
"""
from __future__ import annotations

import math
from typing import Optional

import gymnasium as gym
import numpy as np

from agents.sb3_population import PopulationVecEnv
from patchenv.env.progress import PROGRESS_FEATURES
from patchenv.model.flops import step_flops
from patchenv.population import PopulationEnv

_PROBE_ACCURACY = PROGRESS_FEATURES.index("probe_accuracy")


def count_for(level: int, levels: int, num_patches: int) -> int:
    """Patches kept at policy action `level` (0-based): round((level + 1) * N / levels)."""
    return max(1, min(num_patches, round((level + 1) * num_patches / levels)))


# -- the task over one single env --------------------------------------------------------------
class WholeRuns(gym.Wrapper):
    """The proxy task as SB3 sees it: one episode = one whole training run (a fresh ViT at
    every reset), one action = a count level held for `decide_every` env steps, the reward
    the sum of theirs (one probe each). The env's own epoch-long episodes are stitched
    together (its reset() without a seed continues the run)."""

    def __init__(self, env: gym.Env, levels: int, decide_every: int, target: Optional[float] = None):
        super().__init__(env)
        self.levels, self.decide_every, self.target = levels, decide_every, target
        self.action_space = gym.spaces.Discrete(levels)
        u = env.unwrapped
        self._full_step = step_flops(u.vit_config, u.batch_size, u.num_patches)["total"]
        self._decisions = math.ceil(u.total_steps / decide_every)

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        return self.env.reset(seed=seed, options={"new_run": True})

    def step(self, level):
        u = self.env.unwrapped
        action = count_for(int(level), self.levels, u.num_patches) - 1
        total, flops, info = 0.0, 0, {}
        ended = None
        for _ in range(self.decide_every):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += reward
            flops += info["flops"]
            if terminated:
                ended = (True, False)
                break
            if u.global_step >= u.total_steps:
                ended = (False, True)
                break
            if truncated:  # an epoch ended; the run goes on
                obs, _ = self.env.reset()
        if self.target is None:  # objective "progress": the env's reward
            return (obs, total, *(ended or (False, False)), info)
        # Objective "target": pay the compute (1 per decision with every patch); the run
        # ends once the probe reaches the target; missing it by the budget's end costs a
        # whole run more.
        reward = -flops / (self.decide_every * self._full_step)
        if obs[_PROBE_ACCURACY] >= self.target:
            return obs, reward, True, False, info
        if ended is not None:
            return obs, reward - (self._decisions if ended[1] else 0.0), *ended, info
        return obs, reward, False, False, info


def all_patch_probe_accuracy(runs: WholeRuns, seeds=(1000, 1001)) -> float:
    """The probe accuracy at the end of whole all-patch runs (mean over `seeds`): the
    target of the "target" objective, what plain training reaches in the budget.
    `runs` must have no target (it then ends each run at the budget's end)."""
    final = []
    for seed in seeds:
        obs, _ = runs.reset(seed=seed)
        done = False
        while not done:
            obs, _, terminated, truncated, _ = runs.step(runs.levels - 1)  # the top level keeps every patch
            done = terminated or truncated
        # the probe runs every probe_every steps: the last one is at most that old
        final.append(float(obs[_PROBE_ACCURACY]))
    return float(np.mean(final))


# -- the task over a population ------------------------------------------------------------------
class PopulationRuns(PopulationVecEnv):
    reset_options = {"new_run": True}  # a finished episode is a finished run: the next is fresh

    def __init__(self, population: PopulationEnv, levels: int, decide_every: int, target: Optional[float] = None):
        run = population.unwrapped.runs[0]
        if run.selection != "count" or run.obs_type != "progress" or run.total_steps is None:
            raise ValueError("PopulationRuns needs a population with selection='count', obs_type='progress' and "
                             "budget_epochs set")
        super().__init__(population, gym.spaces.Discrete(levels))
        self.levels, self.decide_every, self.target = levels, decide_every, target
        self._full_step = step_flops(run.vit_config, run.batch_size, run.num_patches)["total"]
        self._decisions = math.ceil(run.total_steps / decide_every)

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
        rewards = total.copy()
        dones, time_limit = ended.copy(), budget_end.copy()
        if self.target is not None:  # objective "target" (agents.keeprate.WholeRuns.step)
            rewards = -flops / (self.decide_every * self._full_step)
            reached = obs[:, _PROBE_ACCURACY] >= self.target
            rewards = rewards - np.where(~reached & budget_end, self._decisions, 0.0)
            dones, time_limit = ended | reached, budget_end & ~reached
        return self._restart(obs, dones, time_limit, infos), rewards.astype(np.float32), dones, infos

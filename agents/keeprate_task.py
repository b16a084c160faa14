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

  Given ``references`` (``agents.evolve.references``: all-patch runs, one per proxy seed) it
  poses the ``time`` objective instead, what ``agents.evolve --objective time`` scores: each
  fresh run takes the next reference in turn and its seed; a decision costs the modeled time
  of its steps (``fixed_cost + k`` a step keeping k patches, in units of the reference's
  whole cost); the run is evaluated on its held-out images at each twentieth of that cost
  and ends when it reaches the reference's final accuracy; a run that spends the
  reference's FLOPs first (or diverges) pays the miss `agents.evolve.TargetClock` scores.
  The rewards of a run sum to minus its score, the modeled time to target, which its last
  info gives (``run_score``, ``reached``, ``proxy_seed``). Given ``baselines`` too (one score
  per reference: what a fixed controller scores on that seed), a run's last reward adds its
  reference's baseline, so its rewards sum to minus its score plus the baseline: a constant
  per seed, which no policy can change, that takes the seed's difficulty out of the return.

  With ``actions="steps"`` an action moves the level the run last kept by one of
  `LEVEL_STEPS` rather than naming a level (`played_level`); either way each decision's
  info gives the level it played (``level``).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import gymnasium as gym
import numpy as np

from agents.evolve import FIXED_COST, Reference, TargetClock
from agents.sb3_population import PopulationVecEnv
from patchenv.env.progress import PROGRESS_FEATURES
from patchenv.model.flops import step_flops
from patchenv.population import PopulationEnv

_PROBE_ACCURACY = PROGRESS_FEATURES.index("probe_accuracy")
_LAST_KEPT = PROGRESS_FEATURES.index("last_kept")
_BUDGET_DONE = PROGRESS_FEATURES.index("budget_done")
TRAIN_FREQ = 1  # the task's DQNs take a gradient step after every decision
# What a policy's action means: "levels", the level to hold; "steps", a move of the level the
# run last kept by one of LEVEL_STEPS (a climb is then one action repeated, not a sequence of
# different levels, each to be found).
ACTIONS = ("levels", "steps")
LEVEL_STEPS = (-1, 0, 1, 2)


def action_count(levels: int, actions: str) -> int:
    """How many actions a policy of `levels` count levels has under `actions` (`ACTIONS`)."""
    if actions not in ACTIONS:
        raise ValueError(f"actions must be one of {', '.join(ACTIONS)}, got {actions!r}")
    return levels if actions == "levels" else len(LEVEL_STEPS)


def played_level(action: int, obs, levels: int, actions: str) -> int:
    """The level (0-based) a policy's `action` plays on the progress observation `obs` (all
    of `PROGRESS_FEATURES`): the action itself under ``actions="levels"``; under ``"steps"``,
    the level the run last kept (from its ``last_kept`` share) moved by
    ``LEVEL_STEPS[action]``, within [0, levels - 1]. A run that has not stepped yet
    (``budget_done`` 0; the env reports it as keeping everything) starts from the lowest
    level. Read off the observation rather than held, so the task, the agent and the
    reaction check play the same level with no state of their own to save."""
    if actions == "levels":
        return int(action)
    fresh = float(obs[_BUDGET_DONE]) == 0.0
    current = 0 if fresh else max(0, round(float(obs[_LAST_KEPT]) * levels) - 1)
    return min(levels - 1, max(0, current + LEVEL_STEPS[int(action)]))


def count_for(level: int, levels: int, num_patches: int) -> int:
    """Patches kept at policy action `level` (0-based): round((level + 1) * N / levels)."""
    return max(1, min(num_patches, round((level + 1) * num_patches / levels)))


class Greedy:
    """A trained policy acting greedily: the count of the level its action plays
    (`played_level`; `actions`: what its actions mean) on the progress observation, of which
    it reads the positions `features`. The keeprate selector and the reaction check both act
    through it (`agents.keeprate_file.PolicyHeader.greedy` builds it from a policy file)."""

    def __init__(self, model, levels: int, features: np.ndarray, actions: str = "levels"):
        self.model, self.levels, self.features, self.actions = model, levels, features, actions

    def count(self, obs, num_patches: int) -> int:
        """Patches to keep for the progress observation `obs` (all of `PROGRESS_FEATURES`)."""
        obs = np.asarray(obs, dtype=np.float32)
        action, _ = self.model.predict(obs[self.features], deterministic=True)
        return count_for(played_level(int(action), obs, self.levels, self.actions), self.levels, num_patches)


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

    def __init__(self, population: PopulationEnv, levels: int, decide_every: int, target: Optional[float] = None,
                 *, references: Optional[Sequence[Reference]] = None, first_check: float = 0.3,
                 fixed_cost: float = FIXED_COST, baselines: Optional[Sequence[float]] = None,
                 actions: str = "levels"):
        run = population.unwrapped.runs[0]
        if run.selection != "count" or run.obs_type != "progress" or run.total_steps is None:
            raise ValueError("PopulationRuns needs a population with selection='count', obs_type='progress' and "
                             "budget_epochs set")
        if target is not None and references is not None:
            raise ValueError("PopulationRuns poses one objective: a probe target or references (time), not both")
        if references is not None and not references:
            raise ValueError("the time objective needs at least one reference run")
        if baselines is not None and (references is None or len(baselines) != len(references)
                                      or not all(math.isfinite(b) for b in baselines)):
            raise ValueError(f"baselines must be one finite score per reference run "
                             f"({0 if references is None else len(references)}), got {list(baselines)}")
        if actions == "steps" and not 1 <= levels <= run.num_patches:
            # a level is read back from the share kept: two levels must not keep the same count
            raise ValueError(f"actions='steps' needs at most one level per patch ({run.num_patches}), got {levels}")
        super().__init__(population, gym.spaces.Discrete(action_count(levels, actions)))
        self.levels, self.decide_every, self.target, self.actions = levels, decide_every, target, actions
        self._obs: Optional[np.ndarray] = None  # the runs' last observations: where a step moves from
        self.references = None if references is None else list(references)
        self.first_check, self.fixed_cost = first_check, fixed_cost
        self.baselines = None if baselines is None else [float(b) for b in baselines]
        self._baseline = np.zeros(self.num_envs)  # each run's reference's baseline, paid with its last reward
        self._taken = 0  # references handed to fresh runs so far: the next is references[_taken % len]
        self._clocks: list[Optional[TargetClock]] = [None] * self.num_envs  # each run's account (time objective)
        self._full_step = step_flops(run.vit_config, run.batch_size, run.num_patches)["total"]
        self._decisions = math.ceil(run.total_steps / decide_every)

    @property
    def planned_decisions(self) -> int:
        """Decisions in a run's planned steps (``budget_epochs``)."""
        return self._decisions

    def reset(self):
        if self.references is not None:  # every run starts on the next reference's seed
            self._seeds = [self._take_reference(i) for i in range(self.num_envs)]
        self._obs = super().reset()
        return self._obs

    def _restart_seeds(self, dones: np.ndarray) -> Optional[list]:
        if self.references is None:
            return None
        return [self._take_reference(i) if done else None for i, done in enumerate(dones)]

    def _take_reference(self, i: int) -> int:
        """Run i's next run is against the next reference in turn: its clock is new; returns its seed."""
        j = self._taken % len(self.references)
        ref = self.references[j]
        self._taken += 1
        self._baseline[i] = 0.0 if self.baselines is None else self.baselines[j]
        self._clocks[i] = TargetClock(ref, self.population.runs[0].num_patches, self.first_check, "time",
                                      self.fixed_cost)
        return ref.seed

    def step_async(self, actions: np.ndarray) -> None:
        actions = np.asarray(actions).reshape(self.num_envs)
        if self.actions == "steps":  # each run moves from the level it last kept
            actions = np.array([played_level(a, self._obs[i], self.levels, "steps") for i, a in enumerate(actions)])
        self._actions = actions  # the levels the runs play this decision

    def step_wait(self):
        obs, rewards, dones, infos = self._step_time() if self.references is not None else self._step_probe()
        for i, info in enumerate(infos):
            info["level"] = int(self._actions[i])  # what was played, whatever the action meant
        self._obs = obs
        return obs, rewards, dones, infos

    def _step_probe(self):
        """One decision under the progress or target objective (`WholeRuns.step`'s)."""
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

    def _step_time(self):
        """One decision under the time objective (class docstring): a run goes on past its
        planned steps (``budget_done`` > 1) until it reaches the target or spends the
        reference's FLOPs, the benchmark's budget."""
        pop, e = self.population, self.num_envs
        kept = [count_for(int(level), self.levels, pop.runs[0].num_patches) for level in self._actions]
        before = np.array([clock.share for clock in self._clocks])
        scores: list[Optional[float]] = [None] * e
        moving = np.ones(e, dtype=bool)
        infos: list[dict] = [{} for _ in range(e)]
        obs = None
        for _ in range(self.decide_every):
            obs, _, terminated, truncated, step_infos = pop.step_runs([k - 1 for k in kept], moving)
            for i in np.flatnonzero(moving):
                infos[i] = step_infos[i]
                check = self._clocks[i].step(kept[i], step_infos[i]["flops"])
                if terminated[i]:  # diverged: it never reaches the target
                    scores[i] = TargetClock.DIVERGED
                elif check:
                    scores[i] = self._clocks[i].score(float(pop.runs[i].evaluate("test")["accuracy"]))
                moving[i] = scores[i] is None
            epoch_end = truncated & moving
            if epoch_end.any():  # an epoch ended; the run goes on
                obs, _ = pop.reset(options={"reset_mask": epoch_end})
            if not moving.any():
                break
        dones = ~moving
        # Minus the cost of this decision's steps; a run that ended pays the rest of its score
        # (nothing more where it reached the target), so a run's rewards sum to minus its score.
        now = np.array([scores[i] if dones[i] else self._clocks[i].share for i in range(e)])
        rewards = before - now
        rewards[dones] += self._baseline[dones]
        for i in np.flatnonzero(dones):
            clock = self._clocks[i]
            infos[i].update(run_score=scores[i], reached=clock.reached, proxy_seed=clock.ref.seed,
                            baseline=float(self._baseline[i]))
        return self._restart(obs, dones, np.zeros(e, dtype=bool), infos), rewards.astype(np.float32), dones, infos

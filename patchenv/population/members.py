"""Code written for one env, run on a population: each run of a `PopulationEnv` as a
`gym.Env` of its own (`MemberEnv`), driven by its own agent in its own thread, the
population stepping once every moving run has asked for a step.

This is how `run_training` (the runner, written for one env and one agent) trains E agents
on one population without a line of it changing: ``Members(population, seeds).run(fns)``
calls ``fns[i](members.envs[i])`` for every run at once.

Determinism: the threads take turns in a fixed order (a baton), so exactly one runs
Python at a time: run 0 until it asks for a step, then run 1, ..., and the last one to ask
steps the population; then run 0 again. Each run keeps its own copy of the global random
generators (python, numpy, torch), swapped in with the baton, so an agent that draws from
them (SB3 samples from torch's) draws what it would alone. A run whose function returns
or raises leaves; the population then steps without it.

A member's ``save_checkpoint`` writes its run in the single env's format and
``load_checkpoint`` reads one (`PopulationEnv.save_run_checkpoint`); ``reset`` resets
that run alone. Anything else is the run's `PatchSelectionEnv` (evaluation, the
pending batch, counters), read through its views of the population's weights.
"""
from __future__ import annotations

import copy
import threading
from typing import Any, Callable, Optional, Sequence

import gymnasium as gym
import numpy as np

from patchenv.env.action import parse_action
from patchenv.env.outcome import row_info, row_scalars
from patchenv.run.resume_points import rng_state, set_rng_state


class MemberEnv(gym.Env):
    """Run i of a population as a single env (module docstring). Build through `Members`."""

    def __init__(self, members: "Members", index: int):
        self._members, self._index = members, index
        self._run = members.population.runs[index]
        self.action_space = self._run.action_space
        self.observation_space = self._run.observation_space
        self.metadata = self._run.metadata
        self.render_mode = self._run.render_mode

    def __getattr__(self, name: str) -> Any:  # what the runner and agents read of a single env
        if name.startswith("__") or name in ("_run", "_members", "_index"):
            raise AttributeError(name)
        return getattr(self._run, name)

    @property
    def np_random(self) -> np.random.Generator:
        return self._run.np_random

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        population = self._members.population
        seeds = [None] * population.num_envs
        seeds[self._index] = seed
        mask = np.zeros(population.num_envs, dtype=bool)
        mask[self._index] = True
        obs, infos = population.reset(seed=seeds, options={**(options or {}), "reset_mask": mask})
        return obs[self._index], {k: v[self._index] for k, v in infos.items() if not k.startswith("_")}

    def step(self, action):
        return self._members.step(self._index, action)

    def render(self):
        return self._run.render()

    def save_checkpoint(self, path) -> None:
        self._members.population.save_run_checkpoint(self._index, path)

    def load_checkpoint(self, path, trust_checkpoint: bool = False):
        return self._members.population.load_run_checkpoint(self._index, path, trust_checkpoint=trust_checkpoint)

    def close(self):
        pass  # the population is the coordinator's to close


class Members:
    """E member envs over `population` (reset first with ``seeds``, run i with seeds[i])."""

    def __init__(self, population, seeds: Sequence[int]):
        if len(seeds) != population.num_envs:
            raise ValueError(f"Members needs one seed per run ({population.num_envs}), got {len(seeds)}")
        self.population = population
        population.reset(seed=[int(s) for s in seeds])
        self.envs = [MemberEnv(self, i) for i in range(population.num_envs)]
        self._cv = threading.Condition()
        self._turn: Optional[int] = None
        self._active: set[int] = set()
        self._posted: dict[int, Any] = {}
        self._results: dict[int, tuple] = {}
        self._rng: dict[int, dict] = {}
        self._error: Optional[BaseException] = None

    def run(self, fns: Sequence[Callable[[MemberEnv], Any]]) -> list:
        """``fns[i](envs[i])`` for every run, in turns; their results in order. The first
        error any raised is raised here once all have ended."""
        if len(fns) != len(self.envs):
            raise ValueError(f"run needs one function per member ({len(self.envs)}), got {len(fns)}")
        results: list = [None] * len(fns)
        errors: list[Optional[BaseException]] = [None] * len(fns)
        start = rng_state()
        self._rng = {i: start for i in range(len(fns))}
        self._active = set(range(len(fns)))
        self._turn = 0

        def body(i: int) -> None:
            with self._cv:
                self._cv.wait_for(lambda: self._turn == i)
                set_rng_state(self._rng[i])
            try:
                results[i] = fns[i](self.envs[i])
            except BaseException as e:  # noqa: B902 - handed to the caller below
                errors[i] = e
            finally:
                with self._cv:
                    self._leave(i)

        threads = [threading.Thread(target=body, args=(i,), name=f"population-run-{i}", daemon=True)
                   for i in range(len(fns))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        set_rng_state(start)
        for e in errors:
            if e is not None:
                raise e
        if self._error is not None:
            raise self._error
        return results

    # -- the baton (called with the condition held) ------------------------------------------
    def step(self, i: int, action) -> tuple:
        run = self.population.runs[i]
        # A bad action is this run's error alone, raised here before anything moves (parsed
        # with a copy of the run's generator: the real draws happen in the population step).
        parse_action(action, run.selection, run.num_patches, run.batch_size, run.device,
                     np.random.Generator(copy.deepcopy(run.np_random.bit_generator)))
        with self._cv:
            if self._turn != i:
                raise RuntimeError("a member env stepped outside its own turn (use Members.run)")
            self._posted[i] = action
            if set(self._posted) == self._active:
                self._step_population()
            self._pass(i)
            self._cv.wait_for(lambda: self._turn == i)
            set_rng_state(self._rng[i])
            result = self._results.pop(i)
        if isinstance(result, BaseException):
            raise result
        return result

    def _leave(self, i: int) -> None:
        self._active.discard(i)
        self._posted.pop(i, None)
        if self._active and set(self._posted) == self._active:
            self._step_population()
        self._pass(i)

    def _step_population(self) -> None:
        population = self.population
        moving = np.zeros(population.num_envs, dtype=bool)
        moving[list(self._posted)] = True
        actions = [self._posted.get(i) for i in range(population.num_envs)]
        self._posted.clear()
        try:
            obs, rewards, terminated, truncated, infos = population.step_moving(actions, moving)
        except BaseException as e:  # a bad action or a failing reward: each moving run sees it
            for i in np.flatnonzero(moving):
                self._results[i] = e
            return
        for i in np.flatnonzero(moving):
            self._results[i] = (obs[i], *row_scalars(rewards, terminated, truncated, i), row_info(infos, i))

    def _pass(self, i: int) -> None:
        """Save run i's global generators and hand the baton to the next run that has not
        asked for a step this round (in index order after i, wrapping)."""
        self._rng[i] = rng_state()
        waiting = sorted(j for j in self._active if j not in self._posted)
        after = [j for j in waiting if j > i]
        self._turn = (after or waiting or [None])[0]
        self._cv.notify_all()


"""``compare_selectors --population``: a selector's seeds at a grid point run as one
population (`patchenv.population.PopulationEnv`), E = the number of seeds, each run with its
own agent through the unchanged runner (`patchenv.population.members.Members`), writing
the same per-run folders and rows as the other schedules.

Timings stay comparable between selectors because every selector runs as a population of
the same size: a run's clock is the population's wall clock while it trains (all its runs
move together, their agents acting in turns), so `all` and a selector are both E runs
sharing one batched ViT. A run's time is not what it would take alone; compare times only
between sweeps with the same seeds (E) and machine.
"""
from __future__ import annotations

from functools import partial
from typing import Optional

from benchmarks.sweep.local import RunOptions, make_env_kwargs, run_one
from benchmarks.sweep.plan import budget_for, images_key, population_groups
from benchmarks.sweep.results import Results
from patchenv import registry
from patchenv.population import PopulationEnv
from patchenv.population.members import Members
from patchenv.run import Budget
from patchenv.run.interrupt import GracefulInterrupt


def run_population(todo: list[tuple], images: dict, options: RunOptions, stop: GracefulInterrupt,
                   results: Results, resume: bool) -> Optional[tuple]:
    """Each (grid point, selector) group of `todo`'s (point, seed, selector) runs as one
    population, group after group in `todo`'s order; returns an interrupted run."""
    for group in population_groups(todo):
        point, _, selector = group[0]
        seeds = [seed for _, seed, _ in group]
        budgets = [budget_for(point, results.runs, selector, seed, None) for seed in seeds]
        metrics = run_population_of(point, images[images_key(point)], selector, seeds, budgets, options, stop,
                                    resume)
        for seed, m in zip(seeds, metrics):
            if m["meta"]["status"] != "complete":
                return point, seed, selector
            results.add(point, selector, seed, m)
    return None


def run_population_of(point: dict, images, selector: str, seeds: list[int], budgets: list[Budget],
                      options: RunOptions, stop: GracefulInterrupt, resume: bool) -> list[dict]:
    """One selector's `seeds` at `point` as one population, each through `run_one` with its
    own agent; their metrics, in order. Both backends run this (Ray inside a trial)."""
    agents = [registry.make_from_spec(selector, seed=seed) for seed in seeds]
    population = PopulationEnv(len(seeds), **make_env_kwargs(point, images, agents[0]))
    try:
        return Members(population, seeds).run([
            partial(_train, point, images, selector, seed, agent, budget, options, stop, resume)
            for seed, agent, budget in zip(seeds, agents, budgets)])
    finally:
        population.close()


def _train(point, images, selector, seed, agent, budget, options, stop, resume, env) -> dict:
    return run_one(point, images, selector, seed, budget, options, stop, resume=resume, keep_checkpoint=False,
                   env=env, agent=agent)

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
from benchmarks.sweep.plan import budget_for, images_key
from benchmarks.sweep.results import Results
from patchenv import registry
from patchenv.population import PopulationEnv
from patchenv.population.members import Members
from patchenv.run.interrupt import GracefulInterrupt


def run_population(todo: list[tuple], images: dict, options: RunOptions, stop: GracefulInterrupt,
                   results: Results, resume: bool) -> Optional[tuple]:
    """Each (grid point, selector) group of `todo`'s (point, seed, selector) runs as one
    population, group after group in `todo`'s order; returns an interrupted run."""
    groups: dict[tuple, list[tuple]] = {}
    for point, seed, selector in todo:
        groups.setdefault((point.get("setting"), selector), []).append((point, seed))
    for (_, selector), runs in groups.items():
        point = runs[0][0]
        seeds = [seed for _, seed in runs]
        agents = [registry.make_from_spec(selector, seed=seed) for seed in seeds]
        population = PopulationEnv(len(seeds), **make_env_kwargs(point, images[images_key(point)], agents[0]))
        try:
            members = Members(population, seeds)
            metrics = members.run([
                partial(_train, point, images[images_key(point)], selector, seed, agent,
                        budget_for(point, results.runs, selector, seed, None), options, stop, resume)
                for seed, agent in zip(seeds, agents)])
        finally:
            population.close()
        for seed, m in zip(seeds, metrics):
            if m["meta"]["status"] != "complete":
                return point, seed, selector
            results.add(point, selector, seed, m)
    return None


def _train(point, images, selector, seed, agent, budget, options, stop, resume, env) -> dict:
    return run_one(point, images, selector, seed, budget, options, stop, resume=resume, keep_checkpoint=False,
                   env=env, agent=agent)

"""Running the sweep here: `run_one` (one selector on one seed through the runner, which
the Ray backend's trials call as well) and the two local schedules, one run after
another or interleaved epoch by epoch."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import gymnasium as gym
import numpy as np

from benchmarks.sweep.plan import REFERENCE, budget_for, epoch_cap, finished, images_key, run_config, run_dir
from benchmarks.sweep.results import Results
from patchenv import registry
from patchenv.model.flops import step_flops
from patchenv.run.interrupt import GracefulInterrupt
from patchenv.run import clear_out
from patchenv.run import Budget, has_checkpoint, read_progress, run_training


@dataclass(frozen=True)
class RunOptions:
    """What a run takes from the command line besides its plan: small and plain, so a Ray
    trial receives these and not the whole parsed command line."""

    checkpoint_every: int = 1
    log_dir: Optional[str] = None  # each run logs under its own sub-folder of it
    show_progress: bool = True
    trust_checkpoint: bool = False  # also resume checkpoints an older patchenv wrote (unpickled)

    @classmethod
    def from_args(cls, args) -> "RunOptions":
        return cls(checkpoint_every=args.checkpoint_every,
                   log_dir=None if args.log_dir is None else str(args.log_dir),
                   show_progress=not args.no_progress, trust_checkpoint=args.trust_checkpoint)


def make_env_kwargs(cfg: dict, images, agent) -> dict:
    """The env settings of a run at point `cfg`, with the agent's own env_kwargs."""
    # budget_epochs: the horizon schedules read (--horizon-epochs, else --epochs: under
    # equal-time, the `all` run's epochs)
    horizon = cfg.get("horizon_epochs") or cfg["epochs"]
    return {**cfg["env"], "dataset": images, "budget_epochs": horizon, **agent.env_kwargs()}


def reference_flops(cfg: dict, images) -> int:
    """The training FLOPs of `all` over ``cfg["epochs"]`` epochs at point `cfg`, computed
    from the ViT's FLOPs count (`patchenv.model.flops.step_flops`) rather than measured: the
    budget of a ``--stop-at-target`` sweep under equal-flops, known before any run."""
    agent = registry.make_from_spec(REFERENCE, seed=0)
    env = make_env(cfg, images, agent)
    try:
        u = env.unwrapped
        return int(step_flops(u.vit_config, u.batch_size, u.num_patches)["total"]) * u.steps_per_epoch * cfg["epochs"]
    finally:
        env.close()


def make_env(cfg: dict, images, agent) -> gym.Env:
    """The env of a run at point `cfg`, built with the agent's own env_kwargs."""
    return gym.make("patchenv/PatchSelection-v1", **make_env_kwargs(cfg, images, agent))


def check_selector(cfg: dict, images, spec: str) -> None:
    """Build the selector's agent and env and let the agent check itself against the env."""
    agent = registry.make_from_spec(spec, seed=0)
    env = make_env(cfg, images, agent)
    try:
        agent.setup(env)
    finally:
        env.close()


def run_one(cfg: dict, images, selector: str, seed: int, budget: Budget, options: RunOptions,
            stop: GracefulInterrupt, resume: bool, keep_checkpoint: bool, last_turn: bool = True,
            on_epoch: Optional[Callable[[dict], None]] = None, pause_at_epochs: bool = False,
            env: Optional[gym.Env] = None, agent=None) -> dict:
    """One selector on one seed (at `cfg`'s grid point, if any) through the runner; returns
    its metrics.json content. Both backends run this (Ray inside a trial), and each run of
    a population (given its member `env` and its `agent`)."""
    agent = agent if agent is not None else registry.make_from_spec(selector, seed=seed)
    env = env if env is not None else make_env(cfg, images, agent)
    folder = run_dir(Path(cfg["out"]), selector, seed, cfg.get("setting"))
    config = run_config(cfg, selector, seed, budget)
    log_dir = (None if options.log_dir is None
               else Path(options.log_dir) / folder.relative_to(Path(cfg["out"]) / "runs"))
    desc = f"  {selector} seed {seed}" + (f" {cfg['setting']}" if cfg.get("setting") is not None else "")
    try:
        return run_training(env, agent, folder, budget=budget, seed=seed, resume=resume, config=config,
                            masked_eval=selector != REFERENCE and last_turn,
                            checkpoint_every=options.checkpoint_every, keep_checkpoint=keep_checkpoint,
                            log_dir=log_dir, show_progress=options.show_progress, desc=desc, stop=stop,
                            protocol=cfg["protocol"], on_epoch=on_epoch, pause_at_epochs=pause_at_epochs,
                            trust_checkpoint=options.trust_checkpoint)
    finally:
        env.close()


def run_sequential(todo: list[tuple], images: dict, options: RunOptions, stop: GracefulInterrupt,
                   results: Results, resume: bool) -> Optional[tuple]:
    """One run after another, each to its end; `todo` holds (point, seed, selector);
    returns the interrupted one."""
    for point, seed, selector in todo:
        metrics = run_one(point, images[images_key(point)], selector, seed,
                          budget_for(point, results.runs, selector, seed, None), options, stop, resume=resume,
                          keep_checkpoint=False)
        if metrics["meta"]["status"] != "complete":
            return point, seed, selector
        results.add(point, selector, seed, metrics)
    return None


def run_interleaved(todo: list[tuple], images: dict, options: RunOptions, stop: GracefulInterrupt,
                    results: Results, resume: bool) -> Optional[tuple]:
    """Every run advances one epoch per turn, the turns of a round in a shuffled order, so
    load that comes and goes on the machine falls on every selector alike. Between turns a
    run waits in its checkpoint (env, agent and every RNG, the global ones included), so
    its numbers are those it would have had alone."""
    cfg, out = results.cfg, results.out
    rng = np.random.default_rng(sum(cfg["seeds"]) + 7919)  # the order of turns, not the runs' draws
    done_epochs = {}
    for point, seed, selector in todo:  # a resumed sweep continues from each run's checkpoint
        folder = run_dir(out, selector, seed, point.get("setting"))
        done_epochs[(point.get("setting"), seed, selector)] = (
            len(read_progress(folder, options.trust_checkpoint)["state"]["history"])
            if resume and has_checkpoint(folder) else 0)
    active = list(todo)
    while active:
        for i in rng.permutation(len(active)):
            point, seed, selector = active[i]
            key = (point.get("setting"), seed, selector)
            epochs = done_epochs[key] + 1
            cap = epoch_cap(cfg, selector)  # `all` trains --epochs; a selector held to its cost may train more
            budget = budget_for(point, results.runs, selector, seed, epochs)
            # The masked evaluations are for the final numbers: only on a run's last turn
            # (under equal-time or with a target any turn may be the last).
            last_turn = (epochs >= cap or budget.seconds is not None or budget.flops is not None
                         or budget.accuracy is not None)
            # A turn that is not the run's end leaves it paused (a seconds or FLOPs budget
            # that runs out completes it).
            metrics = run_one(point, images[images_key(point)], selector, seed, budget, options, stop, resume=True,
                              keep_checkpoint=True, last_turn=last_turn, pause_at_epochs=epochs < cap)
            if metrics["meta"]["status"] not in ("paused", "complete"):
                return point, seed, selector
            done_epochs[key] = epochs
            # complete: the run's cap, its time or FLOPs, or its target reached (paused: a turn)
            if metrics["meta"]["status"] == "complete":
                folder = run_dir(out, selector, seed, point.get("setting"))
                clear_out(folder, ("checkpoints", "progress.json"))  # finished: nothing left to resume
                results.add(point, selector, seed, metrics)
        active = [t for t in active if not finished(results.runs, t[0].get("setting"), t[1], t[2])]
    return None

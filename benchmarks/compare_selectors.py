"""Compare patch selectors on the same data, seeds and budget: accuracy against training time.

    python -m benchmarks.compare_selectors --dataset digits --preset small --epochs 20 --seeds 0,1 \
        --selectors all,random,agentvit:frequency=6:eps_decay=450,norm_topk --device cpu --out results/digits  # make run

A thin front end over the one runner (`patchenv.run`): every (selector, seed) is one run
of ``run_training`` in its own folder ``OUT/runs/<selector>-seed<seed>/`` (its
``metrics.json``, and its checkpoint while it runs), and this script merges them.

For every seed, ``all`` (every patch, the plain ViT) runs first: it is the reference that
speed-up, accuracy change and the default target accuracy are measured against, on the
same seed. Then each selector gets a fresh env seeded the same way (``reset(seed=s)``: same
ViT initialisation, same data order), built with the selector's own ``env_kwargs()``, and
the agent gets the same seed.

What is measured, and how:
- training time: wall clock of ``agent.train`` epoch by epoch (the env's steps *and* the
  agent's own acting and learning, since both are what a user pays for), the device
  synchronised before the clock is read; evaluation and checkpointing are outside it.
  ``env_step_time_s`` is the env's share, ``agent_overhead_s`` the agent's.
- accuracy: with all patches after every epoch on the validation split (``--protocol
  val``, the default; the test split once at the end) or on the test split (``--protocol
  paper``, the notebook's protocol), and at the end also with the selector's own masks (``test_accuracy_masked``) and with
  random masks drawn as AgentViT explores (``test_accuracy_random_masks``: a uniform
  vector cut at its mean, ~N/2 kept, a fresh draw per batch, seeded by the run's seed),
  the notebook's three columns; `all` gets only the first.
- ``--budget equal-epochs`` (default): every selector trains ``--epochs`` epochs.
  ``--budget equal-time``: each selector trains until its training time reaches the
  ``all`` run's on the same seed, so "does it save time?" is answered at equal cost.
- ``time_to_target_s`` (and ``tokens_to_target``, ``flops_to_target``): training cost at
  the first evaluation whose accuracy (validation under ``--protocol val``) reached the
  target (``--target-accuracy``, by default the ``all`` run's final accuracy, same seed).
- ``--suite fmnist``: the standard offline comparison (`benchmarks.suites`).

Writes ``OUT/results.json`` ({"meta", "runs"}; each run holds its per-epoch ``curve``
with the runner's field names), ``OUT/results.csv`` (one row per run, the scalar fields)
``OUT/accuracy_vs_time.png``, ``accuracy_vs_flops.png`` and ``patch_keep_frequency.png``;
prints a Markdown table (mean and 95% confidence interval over seeds, paired differences
against ``all``).
Results are written after every finished run. An OUT that holds results needs
``--resume`` (skips finished runs, continues the interrupted one from its checkpoint) or
``--overwrite`` (starts over). Ctrl-C stops after the current step and checkpoints; a
second Ctrl-C stops at once (the last epoch's checkpoint stays).

Grids: ``--grid alpha=0.3,0.7 --grid preset=tiny,small`` crosses env settings (the preset
or any env flag) with the selectors and seeds. Every grid point is its own comparison,
with its own ``all`` reference, run folders ``OUT/runs/<setting>/<selector>-seed<seed>/``
(setting ``alpha=0.3,preset=tiny``), rows carrying ``setting`` and a column per key, and
its own block of the printed table.

Backends: ``--backend local`` (default) runs here, one run at a time; ``--backend ray``
makes every (setting, selector, seed) run one Ray Tune trial, ``--cpus-per-run`` CPUs and
``--gpus-per-run`` GPUs each (`benchmarks.ray_sweep`), on a private local Ray or, with
``--ray-address``, a cluster. Both call the same ``run_one`` and merge into the same files;
a run's torch thread count is ``--cpus-per-run`` under both, so on a CPU they give the
same numbers.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

import patchenv  # noqa: F401  (registers the env ids)
from benchmarks.common import fmt_ci, markdown_table, parse_list, pyplot, save_figure, write_csv
from benchmarks.suites import SUITES
from patchenv import data as data_mod
from patchenv import registry
from patchenv.atomic import atomic_write_json
from patchenv.env.config import EnvConfig
from patchenv.env import resolve_device
from patchenv.run.interrupt import GracefulInterrupt
from patchenv.run.meta import meta_block
from patchenv.checks import check_seed, memory_message, one_line, out_of_memory
from patchenv.cli.options import DEFAULT_PRESET, add_run_arguments, check_out, env_settings
from patchenv.run import (SUMMARY_FIELDS, Budget, RunError, clear_out, has_checkpoint, locked, read_progress,
                          run_training)

REFERENCE = "all"
BUDGETS = ("equal-epochs", "equal-time")
# Scalar per-run fields: the CSV's columns, in order (the JSON adds the per-epoch "curve").
RUN_FIELDS = ("selector", "seed", "dataset") + SUMMARY_FIELDS + (
    "speedup_vs_all", "accuracy_delta_vs_all", "target_accuracy", "time_to_target_s", "tokens_to_target",
    "flops_to_target", "speedup_to_target", "speedup_to_target_flops", "accuracy_delta_at_equal_flops")
# Configuration keys that must match for --resume to reuse earlier runs.
COMPARABLE = ("dataset", "preset", "env", "epochs", "budget", "device", "protocol")
OUTPUTS = ("results.json", "results.csv", "accuracy_vs_time.png", "accuracy_vs_flops.png", "patch_keep_frequency.png",
           "runs", "ray")
BACKENDS = ("local", "ray")
# --grid keys besides the env's own flags (EnvConfig fields).
GRID_EXTRA_KEYS = ("preset",)


# -- configuration ------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.compare_selectors", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--selectors", default="all,random,norm_topk", metavar="NAME[:key=value...],...",
                   help="comma list of agent specs (`patchenv agents` lists the names), e.g. random:k=32; "
                        "`all` is added first if missing (default: all,random,norm_topk)")
    p.add_argument("--seeds", "--seed", dest="seeds", default="0", help="comma list of seeds (default: 0)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (the `all` run's under equal-time; default: 3)")
    p.add_argument("--budget", default="equal-epochs", choices=BUDGETS, help="(default: equal-epochs)")
    p.add_argument("--schedule", default=None, choices=("interleaved", "sequential"),
                   help="--backend local: interleaved (default): every run advances one epoch per turn in a shuffled "
                        "round-robin, so load drift falls on every selector alike (a run's numbers do not change); "
                        "sequential: one run after another. (--backend ray runs trials side by side: 'parallel')")
    p.add_argument("--target-accuracy", type=float, default=None,
                   help="test accuracy (fraction) for time_to_target_s; default: the `all` run's final, same seed")
    add_run_arguments(p, out_default="results/compare")
    p.add_argument("--suite", choices=sorted(SUITES), default=None,
                   help="a named standard comparison (benchmarks/suites.py): its settings become the defaults, "
                        "flags given still win; fmnist: " + " ".join(f"{k}={v}" for k, v in SUITES["fmnist"].items()))
    p.add_argument("--grid", action="extend", nargs="+", default=[], metavar="KEY=V1,V2",
                   help="cross env settings with the selectors and seeds, e.g. --grid alpha=0.3,0.7 preset=tiny,small "
                        "(repeatable); KEY is preset or any env flag's name (alpha, n_patch_desired, dataset, "
                        "val_fraction, lr, batch_size, ...) and overrides that flag; every grid point has its own "
                        "`all` reference")
    scale = p.add_argument_group("scale-out")
    scale.add_argument("--backend", default="local", choices=BACKENDS,
                       help="local (default): the runs one at a time in this process; ray: every (setting, selector, "
                            "seed) run is a Ray Tune trial (pip install -e \".[ray]\")")
    scale.add_argument("--cpus-per-run", type=float, default=1.0, metavar="N",
                       help="CPUs a run uses: its torch thread count (the integer part, at least 1) under either "
                            "backend, so both give the same numbers on a CPU, and the CPUs Ray reserves per trial "
                            "(default: 1)")
    scale.add_argument("--gpus-per-run", type=float, default=None, metavar="G",
                       help="--backend ray: GPUs per trial; a fraction shares a GPU between trials, e.g. 0.25 runs four "
                            "small ViTs on one GPU (default: 0; --device cuda needs more)")
    scale.add_argument("--ray-address", default=None, metavar="ADDRESS",
                       help="--backend ray: the cluster to use, 'auto' (the one this node belongs to) or "
                            "ray://HOST:PORT; default: start a private local Ray for this sweep, never an existing one")
    scale.add_argument("--ray-num-cpus", type=int, default=None, metavar="N",
                       help="--backend ray without --ray-address: CPUs of the private local Ray (default: all cores)")
    scale.add_argument("--max-failures", type=int, default=None, metavar="N",
                       help="--backend ray: retries of a trial whose worker died, each from the run's last "
                            "checkpoint (default: 3)")
    p.add_argument("--stop-after-steps", type=int, default=None, help=argparse.SUPPRESS)  # tests: a simulated Ctrl-C
    # tests: a Ray trial's worker dies (os._exit) once, after the run's first checkpoint; the file marks it done
    p.add_argument("--die-once-after-checkpoint", default=None, metavar="MARKER", help=argparse.SUPPRESS)
    return p


def parse_args(parser: argparse.ArgumentParser, argv: Optional[list[str]]) -> argparse.Namespace:
    """Parse twice when a --suite is named: once to find it, then with its settings as defaults."""
    args = parser.parse_args(argv)
    if args.suite is not None:
        parser.set_defaults(**SUITES[args.suite])
        args = parser.parse_args(argv)
    return args


def make_config(args) -> dict:
    """The sweep's configuration (the selectors are checked by `check_selector`, once the
    data is loaded; nothing runs)."""
    if args.epochs <= 0:
        raise ValueError(f"--epochs must be positive, got {args.epochs}")
    if args.target_accuracy is not None and not 0 < args.target_accuracy <= 1:
        raise ValueError(f"--target-accuracy is a fraction in (0, 1], got {args.target_accuracy}")
    selectors = parse_list(args.selectors)
    if not selectors:
        raise ValueError("--selectors is empty")
    selectors = [REFERENCE] + [s for s in dict.fromkeys(selectors) if s != REFERENCE]
    try:
        seeds = list(dict.fromkeys(parse_list(args.seeds, int)))
    except ValueError:
        raise ValueError(f"--seeds must be a comma list of integers, got {args.seeds!r}") from None
    if not seeds:
        raise ValueError("--seeds is empty")
    for seed in seeds:
        check_seed(seed, "--seeds")
    check_scale_out(args)
    preset, env = point_env(args)
    cfg = {"dataset": env["dataset"], "preset": preset, "env": env, "epochs": args.epochs,
           "selectors": selectors, "seeds": seeds, "budget": args.budget, "device": env["device"],
           "target_accuracy": args.target_accuracy, "out": str(args.out),
           "schedule": args.schedule or ("interleaved" if args.backend == "local" else "parallel"),
           "protocol": args.protocol, "suite": args.suite}
    cfg.update(backend=args.backend, cpus_per_run=args.cpus_per_run, threads=run_threads(args.cpus_per_run))
    if args.backend == "ray":
        cfg.update(gpus_per_run=args.gpus_per_run or 0.0, ray_address=args.ray_address,
                   max_failures=3 if args.max_failures is None else args.max_failures)
    grid = parse_grid(args.grid)
    if grid:  # only then: a sweep without a grid keeps its configuration (and --resume its check) as before
        cfg["grid"] = grid
    return cfg


def run_threads(cpus_per_run: float) -> int:
    """The torch thread count of a run: the CPUs it has, at least one. Fixed rather than
    torch's default (the machine's cores) so that a run's numbers do not depend on where
    it runs: on a CPU the thread count changes the order of float sums."""
    return max(1, int(cpus_per_run))


def check_scale_out(args) -> None:
    """The backend's flags, each checked against the backend it belongs to."""
    if not args.cpus_per_run > 0:
        raise ValueError(f"--cpus-per-run must be positive, got {args.cpus_per_run}")
    ray_only = {"--gpus-per-run": args.gpus_per_run, "--ray-address": args.ray_address,
                "--ray-num-cpus": args.ray_num_cpus, "--max-failures": args.max_failures,
                "--die-once-after-checkpoint": args.die_once_after_checkpoint}
    if args.backend == "local":
        given = [flag for flag, value in ray_only.items() if value is not None]
        if given:
            raise ValueError(f"{', '.join(given)} only apply to --backend ray")
        return
    if args.schedule is not None:
        raise ValueError("--schedule applies to --backend local; Ray runs the trials side by side")
    if args.stop_after_steps is not None:
        raise ValueError("--stop-after-steps applies to --backend local")
    if args.gpus_per_run is not None and not args.gpus_per_run >= 0:
        raise ValueError(f"--gpus-per-run must be 0 or more (fractions share a GPU), got {args.gpus_per_run}")
    if args.max_failures is not None and args.max_failures < 0:
        raise ValueError(f"--max-failures must be 0 or more, got {args.max_failures}")
    if args.ray_num_cpus is not None:
        if args.ray_address is not None:
            raise ValueError("--ray-num-cpus sizes the private local Ray; a cluster given by --ray-address has its own")
        if args.ray_num_cpus < 1:
            raise ValueError(f"--ray-num-cpus must be at least 1, got {args.ray_num_cpus}")
    if args.ray_address is None and args.cpus_per_run > (args.ray_num_cpus or os.cpu_count() or 1):
        raise ValueError(f"--cpus-per-run {args.cpus_per_run:g} exceeds the local Ray's "
                         f"{args.ray_num_cpus or os.cpu_count()} CPUs: no trial could start")


def point_env(args) -> tuple[str, dict]:
    """The preset and env settings of `args` (the command line, or a grid point's copy)."""
    preset = args.preset or DEFAULT_PRESET
    env = env_settings(args, preset)
    if env["dataset"] not in data_mod.DATASETS:
        raise ValueError(f"unknown dataset {env['dataset']!r}; choose from: {', '.join(data_mod.DATASETS)}")
    device = env.get("device", "auto")
    if args.backend == "ray":
        # A Ray trial sees the GPUs it reserved and no other (CUDA_VISIBLE_DEVICES): "auto"
        # means CUDA exactly when trials reserve GPUs, and CUDA without a reservation fails.
        gpus = args.gpus_per_run or 0
        if str(device) == "auto":
            device = "cuda" if gpus > 0 else "cpu"
        kind = torch.device(device).type
        if kind == "cuda" and gpus == 0:
            raise ValueError("--device cuda with --backend ray needs --gpus-per-run above 0: Ray hides the GPUs "
                             "from a trial that reserves none")
        if kind == "cpu" and gpus > 0:
            raise ValueError(f"--gpus-per-run {gpus:g} with --device cpu: the trials would hold GPUs they never use")
        # On a private local Ray the trials run on this machine: check CUDA is here. A
        # cluster's head may have no GPU while its workers do.
        env["device"] = str(resolve_device(device) if args.ray_address is None else torch.device(device))
    else:
        env["device"] = str(resolve_device(device))
    return preset, env


def parse_grid(texts) -> dict:
    """``--grid KEY=V1,V2 ...`` -> {key: [values]}, in the order given, each value converted
    and checked as its own flag (``--KEY``) converts and checks it."""
    env_keys = {f.name for f in dataclasses.fields(EnvConfig)}
    actions = {a.dest: a for a in build_parser()._actions if a.dest in env_keys or a.dest in GRID_EXTRA_KEYS}
    grid = {}
    for text in texts:
        key, sep, values = text.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not sep or not key:
            raise ValueError(f"--grid expects KEY=V1,V2,..., got {text!r}")
        if key not in actions:
            raise ValueError(f"--grid: unknown key {key!r}; expected preset or an env flag's name: "
                             f"{', '.join(sorted(actions))}")
        if key in grid:
            raise ValueError(f"--grid: {key} given twice; give all its values at once, {key}=V1,V2")
        items = parse_list(values)
        if not items:
            raise ValueError(f"--grid {key}: no values; expected {key}=V1,V2,...")
        typed = [_grid_value(actions[key], key, item) for item in items]
        if len({repr(v) for v in typed}) < len(typed):
            raise ValueError(f"--grid {key}: a value is listed twice ({values})")
        grid[key] = typed
    return grid


def _grid_value(action: argparse.Action, key: str, text: str):
    if action.nargs == 0:  # a switch (--download, --compile, ...)
        words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
        if text.lower() not in words:
            raise ValueError(f"--grid {key}: expected true or false, got {text!r}")
        return words[text.lower()]
    value = text
    if action.type is not None:
        try:
            value = action.type(text)
        except (argparse.ArgumentTypeError, ValueError, TypeError) as e:
            raise ValueError(f"--grid {key}={text}: {e}") from None
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"--grid {key}: {text!r} is not one of {', '.join(map(str, action.choices))}")
    return value


def grid_points(cfg: dict, args) -> list[dict]:
    """One configuration per grid point: the sweep's, with the point's env settings and its
    ``setting`` (``alpha=0.3,preset=tiny``) and ``values``; without a grid, the sweep's own."""
    grid = cfg.get("grid")
    if not grid:
        return [cfg]
    points = []
    for values in itertools.product(*grid.values()):
        setting = dict(zip(grid, values))
        label = ",".join(f"{k}={v}" for k, v in setting.items())
        try:
            preset, env = point_env(argparse.Namespace(**{**vars(args), **setting}))
        except ValueError as e:
            raise ValueError(f"grid point {label}: {e}") from None
        points.append({**cfg, "dataset": env["dataset"], "preset": preset, "env": env, "device": env["device"],
                       "setting": label, "values": setting})
    return points


def load_images(points: list[dict]) -> dict:
    """Each data set the points use, loaded once: {images_key(point): ImageData}."""
    images = {}
    for point in points:
        key = images_key(point)
        if key not in images:
            images[key] = data_mod.load_dataset(key[0], data_root=key[1], download=key[2], image_size=key[3])
    return images


def images_key(point: dict) -> tuple:
    env = point["env"]
    return env["dataset"], env.get("data_root"), bool(env.get("download")), env.get("image_size")


def run_dir(out: Path, selector: str, seed: int, setting: Optional[str] = None) -> Path:
    """``OUT/runs/<selector>-seed<seed>``, under ``<setting>/`` for a grid point."""
    safe = _safe(selector, "._-")
    folder = out / "runs" if setting is None else out / "runs" / _safe(setting, "._-=,")
    return folder / f"{safe}-seed{seed}"


def _safe(name: str, allowed: str) -> str:
    return "".join(c if c.isalnum() or c in allowed else "_" for c in name)


def make_env(cfg: dict, images, agent) -> gym.Env:
    # budget_epochs: the horizon schedules read (under equal-time, the `all` run's epochs)
    return gym.make("patchenv/PatchSelection-v0", **{**cfg["env"], "dataset": images, "budget_epochs": cfg["epochs"],
                                                     **agent.env_kwargs()})


def check_selector(cfg: dict, images, spec: str) -> None:
    """Build the selector's agent and env and let the agent check itself against the env."""
    agent = registry.make_from_spec(spec, seed=0)
    env = make_env(cfg, images, agent)
    try:
        agent.setup(env)
    finally:
        env.close()


# -- one run --------------------------------------------------------------------------------
def run_one(cfg: dict, images, selector: str, seed: int, budget: Budget, args, stop: GracefulInterrupt,
            resume: bool, keep_checkpoint: bool, last_turn: bool = True,
            on_epoch: Optional[Callable[[dict], None]] = None) -> dict:
    """One selector on one seed (at `cfg`'s grid point, if any) through the runner; returns
    its metrics.json content. Both backends run this (Ray inside a trial)."""
    agent = registry.make_from_spec(selector, seed=seed)
    env = make_env(cfg, images, agent)
    folder = run_dir(Path(cfg["out"]), selector, seed, cfg.get("setting"))
    config = run_config(cfg, selector, seed, budget)
    log_dir = None if args.log_dir is None else Path(args.log_dir) / folder.relative_to(Path(cfg["out"]) / "runs")
    desc = f"  {selector} seed {seed}" + (f" {cfg['setting']}" if cfg.get("setting") is not None else "")
    try:
        return run_training(env, agent, folder, budget=budget, seed=seed, resume=resume, config=config,
                            masked_eval=selector != REFERENCE and last_turn, checkpoint_every=args.checkpoint_every,
                            keep_checkpoint=keep_checkpoint, log_dir=log_dir, show_progress=not args.no_progress,
                            desc=desc, stop=stop, protocol=cfg["protocol"], on_epoch=on_epoch)
    finally:
        env.close()


def run_config(cfg: dict, selector: str, seed: int, budget: Budget) -> dict:
    """The configuration a run records in its metrics.json and progress.json."""
    config = {**{k: cfg[k] for k in ("dataset", "preset", "env", "protocol")}, "agent": selector, "seed": seed,
              "budget": {"epochs": budget.epochs, "seconds": budget.seconds}}
    if cfg.get("setting") is not None:
        config["setting"] = cfg["values"]
    return config


def budget_for(cfg: dict, runs: list[dict], selector: str, seed: int, epochs: Optional[int]) -> Budget:
    """`epochs` (the whole run's when None); under equal-time a selector also stops at the
    `all` run's training time on the same seed and grid point (and may then train more
    epochs than it)."""
    if cfg["budget"] == "equal-time" and selector != REFERENCE:
        ref = next(r for r in runs if r["selector"] == REFERENCE and r["seed"] == seed
                   and r.get("setting") == cfg.get("setting"))
        return Budget(epochs=epochs, seconds=ref["train_time_s"])
    return Budget(epochs=epochs if epochs is not None else cfg["epochs"])


def record(cfg: dict, selector: str, seed: int, metrics: dict) -> dict:
    """A run's row: who, where in the grid (a grid point's rows carry ``setting`` and one
    field per grid key), its summary and its per-epoch curve."""
    where = {} if cfg.get("setting") is None else {"setting": cfg["setting"], **cfg["values"]}
    return {"selector": selector, "seed": seed, "dataset": cfg["dataset"], **where, **metrics["summary"],
            "curve": metrics["epochs"]}


def finished(runs: list[dict], setting: Optional[str], seed: int, selector: str) -> bool:
    return any(r["selector"] == selector and r["seed"] == seed and r.get("setting") == setting for r in runs)


def run_sequential(todo, cfg, images, args, stop, runs, out, meta, bar) -> Optional[tuple]:
    """One run after another, each to its end; `todo` holds (point, seed, selector);
    returns the interrupted one."""
    for point, seed, selector in todo:
        metrics = run_one(point, images[images_key(point)], selector, seed,
                          budget_for(point, runs, selector, seed, None), args, stop, resume=args.resume,
                          keep_checkpoint=False)
        if metrics["meta"]["status"] != "complete":
            return point, seed, selector
        runs.append(record(point, selector, seed, metrics))
        write_results(out, meta, runs, cfg, "running")
        bar.update(1)
    return None


def run_interleaved(todo, cfg, images, args, stop, runs, out, meta, bar) -> Optional[tuple]:
    """Every run advances one epoch per turn, the turns of a round in a shuffled order, so
    load that comes and goes on the machine falls on every selector alike. Between turns a
    run waits in its checkpoint (env, agent and every RNG, the global ones included), so
    its numbers are those it would have had alone."""
    rng = np.random.default_rng(sum(cfg["seeds"]) + 7919)  # the order of turns, not the runs' draws
    done_epochs = {}
    for point, seed, selector in todo:  # a resumed sweep continues from each run's checkpoint
        folder = run_dir(out, selector, seed, point.get("setting"))
        done_epochs[(point.get("setting"), seed, selector)] = (
            len(read_progress(folder)["state"]["history"]) if args.resume and has_checkpoint(folder) else 0)
    active = list(todo)
    cap = cfg["epochs"] if cfg["budget"] == "equal-epochs" else 20 * cfg["epochs"]  # equal-time: up to 20x
    while active:
        for i in rng.permutation(len(active)):
            point, seed, selector = active[i]
            key = (point.get("setting"), seed, selector)
            epochs = done_epochs[key] + 1
            budget = budget_for(point, runs, selector, seed, epochs)
            # The masked evaluations are for the final numbers: only on a run's last turn
            # (under equal-time any turn may be the last).
            last_turn = epochs >= cap or budget.seconds is not None
            metrics = run_one(point, images[images_key(point)], selector, seed, budget, args, stop, resume=True,
                              keep_checkpoint=True, last_turn=last_turn)
            if metrics["meta"]["status"] != "complete":
                return point, seed, selector
            done_epochs[key] = epochs
            summary = metrics["summary"]
            over = epochs >= cap or (budget.seconds is not None and summary["train_time_s"] >= budget.seconds)
            if over:
                folder = run_dir(out, selector, seed, point.get("setting"))
                clear_out(folder, ("checkpoints", "progress.json"))  # finished: nothing left to resume
                runs.append(record(point, selector, seed, metrics))
                write_results(out, meta, runs, cfg, "running")
                bar.update(1)
        active = [t for t in active if not finished(runs, t[0].get("setting"), t[1], t[2])]
    return None


# -- the comparison -----------------------------------------------------------------------
def curve_key(runs: list[dict]) -> str:
    """The accuracy the curves, targets and time-to-target use: validation when the runs
    have it (``--protocol val``), else test (``--protocol paper``)."""
    has_val = any(p.get("val_accuracy") is not None for r in runs for p in r["curve"])
    return "val_accuracy" if has_val else "test_accuracy"


def fill_relative(runs: list[dict], target: Optional[float]) -> None:
    """speedup_vs_all, accuracy_delta_vs_all (final test accuracy), the target (the `all`
    run's final accuracy on the curves' split, same seed, unless given) and the cost to
    reach it in seconds, tokens and FLOPs, with speed-ups against `all` on the same seed
    (None where there is none or a run never reached it). A grid point is its own
    comparison: its own `all` runs, and its own split for the curves."""
    keys = {setting: curve_key([r for r in runs if r.get("setting") == setting])
            for setting in {r.get("setting") for r in runs}}
    ref = {(r["seed"], r.get("setting")): r for r in runs if r["selector"] == REFERENCE}
    for r in runs:
        key = keys[r.get("setting")]
        a = ref.get((r["seed"], r.get("setting")))
        tgt = target if target is not None else (a["curve"][-1][key] if a and a["curve"] else None)
        r["target_accuracy"] = tgt
        reached = _first_reaching(r["curve"], key, tgt)
        r["time_to_target_s"], r["tokens_to_target"], r["flops_to_target"] = (
            (reached["train_time_s"], reached["train_tokens"], reached["train_flops"]) if reached else (None,) * 3)
        if a is None:
            r["speedup_vs_all"] = r["accuracy_delta_vs_all"] = None
            r["speedup_to_target"] = r["speedup_to_target_flops"] = None
            continue
        r["speedup_vs_all"] = a["train_time_s"] / r["train_time_s"] if r["train_time_s"] > 0 else None
        r["accuracy_delta_vs_all"] = r["test_accuracy"] - a["test_accuracy"]
        a_reached = _first_reaching(a["curve"], key, tgt)
        r["speedup_to_target"] = (a_reached["train_time_s"] / r["time_to_target_s"]
                                  if a_reached and r["time_to_target_s"] else None)
        r["speedup_to_target_flops"] = (a_reached["train_flops"] / r["flops_to_target"]
                                        if a_reached and r["flops_to_target"] else None)
        r["accuracy_delta_at_equal_flops"] = _delta_at_equal_flops(r, a, key)


def _delta_at_equal_flops(run: dict, ref: dict, key: str) -> Optional[float]:
    """The run's final accuracy (on the curves' split) minus the reference's at the same
    training FLOPs: the reference's curve interpolated linearly in FLOPs between its
    evaluations, held at its first (last) value before (after) them. Before its first
    evaluation the reference is credited with its first epoch's accuracy, which can only
    favour it. None without the data."""
    pts = [(p["train_flops"], p[key]) for p in ref["curve"] if p.get(key) is not None and p.get("train_flops")]
    mine = [p for p in run["curve"] if p.get(key) is not None and p.get("train_flops")]
    if not pts or not mine:
        return None
    xs, ys = zip(*pts)
    return float(mine[-1][key] - np.interp(mine[-1]["train_flops"], xs, ys))


def _first_reaching(curve: list[dict], key: str, target: Optional[float]) -> Optional[dict]:
    if target is None:
        return None
    for point in curve:
        if point.get(key) is not None and point[key] >= target - 1e-12:
            return point
    return None


def summary_table(runs: list[dict], selectors: list[str], settings: Optional[list] = None) -> str:
    """Per selector: mean ± the 95% confidence interval over seeds; the differences against
    `all` are paired by seed, and a '*' marks those whose interval excludes zero (one for
    the speed-ups, taken over the seeds that reached the target). With a grid, a first
    column names the setting and each setting's selectors come together."""
    key = curve_key(runs)
    settings = list(dict.fromkeys(list(settings or []) + [r.get("setting") for r in runs])) or [None]
    grid = settings != [None]
    rows = []
    for setting, name in ((t, n) for t in settings
                          for n in dict.fromkeys(selectors + [r["selector"] for r in runs])):
        rs = [r for r in runs if r["selector"] == name and r.get("setting") == setting]
        if not rs:
            continue

        def col(k, fmt="{:.3f}", scale=1.0, null=None):
            return fmt_ci([r.get(k) for r in rs], fmt, scale, null=None if name == REFERENCE else null)

        rows.append(([setting] if grid else []) + [name, len(rs), col("test_accuracy", "{:.2f}", 100),
                     col("accuracy_delta_vs_all", "{:+.2f}", 100, null=0.0),
                     col("test_accuracy_masked", "{:.2f}", 100), col("test_accuracy_random_masks", "{:.2f}", 100),
                     col("mean_patches_kept", "{:.1f}"), col("train_time_s", "{:.1f}"),
                     col("train_flops", "{:.3g}", 1e-12), col("speedup_vs_all", "{:.2f}"),
                     f"{sum(r.get('flops_to_target') is not None for r in rs)}/{len(rs)}",
                     col("time_to_target_s", "{:.1f}"), col("speedup_to_target", "{:.2f}", null=1.0),
                     col("speedup_to_target_flops", "{:.2f}", null=1.0),
                     col("accuracy_delta_at_equal_flops", "{:+.2f}", 100, null=0.0),
                     col("agent_overhead_share", "{:.1f}", 100)])
    header = (["setting"] if grid else []) + [
              "selector", "seeds", "test acc % (all patches)", "Δ test acc vs all (points, paired)",
              "test acc % (own masks)", "test acc % (random masks)", "patches kept", "train time s",
              "train TFLOPs", "speed-up vs all", "reached target", f"time to target s ({key.split('_')[0]})",
              "speed-up to target", "speed-up to target (FLOPs)",
              f"Δ {key.split('_')[0]} acc at equal FLOPs (points, paired)", "agent overhead %"]
    return markdown_table(header, rows)


def series_name(r: dict) -> str:
    """A run's line (and heat map) in the figures: its selector, after its grid setting."""
    return r["selector"] if r.get("setting") is None else f"{r['setting']}: {r['selector']}"


def series_order(runs: list[dict], selectors: list[str]) -> list[str]:
    settings = list(dict.fromkeys(r.get("setting") for r in runs)) or [None]
    named = [series_name({"selector": s, "setting": t}) for t in settings for s in selectors]
    return list(dict.fromkeys(named + [series_name(r) for r in runs]))


def plot(runs: list[dict], selectors: list[str], path: Path, title: str, x: str = "train_time_s") -> None:
    """Accuracy (%) on the curves' split against training time (or FLOPs): every seed
    faintly, the mean across seeds in bold with a band of ± one standard deviation, from
    the untrained t=0 point (chance accuracy, 1 / classes) on."""
    plt = pyplot()
    key = curve_key(runs)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    order = series_order(runs, selectors)
    for i, name in enumerate(order):
        rs = [r for r in runs if series_name(r) == name and r["curve"]]
        if not rs:
            continue
        # matplotlib's 10 default colours would repeat beyond 10 selectors: tab20 then
        color = f"C{i}" if len(order) <= 10 else plt.get_cmap("tab20")(i % 20)
        chance = 100.0 / 10  # every data set here has 10 classes

        def series(r):
            pts = [p for p in r["curve"] if p.get(key) is not None]
            return [0.0] + [p[x] for p in pts], [chance] + [100 * p[key] for p in pts]

        for r in rs:
            ax.plot(*series(r), color=color, alpha=0.2, linewidth=0.8)
        n = min(len(series(r)[0]) for r in rs)
        xs = np.mean([series(r)[0][:n] for r in rs], axis=0)
        ys = np.array([series(r)[1][:n] for r in rs])
        mean, std = ys.mean(axis=0), ys.std(axis=0, ddof=1) if len(rs) > 1 else np.zeros(n)
        ax.plot(xs, mean, marker="o", markersize=3, color=color, label=f"{name} (mean of {len(rs)} seeds)")
        ax.fill_between(xs, mean - std, mean + std, color=color, alpha=0.15, linewidth=0)
    ax.set_xlabel("cumulative training time (s), evaluation excluded" if x == "train_time_s"
                  else "cumulative training FLOPs (forward + backward)")
    ax.set_ylabel(f"{key.split('_')[0]} accuracy % (all patches)")
    ax.set_title(title + "\nthin: each seed; bold: mean; band: ± 1 std over seeds; t=0: untrained (chance)",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)
    plt.close(fig)


def plot_keep_frequency(runs: list[dict], selectors: list[str], path: Path, title: str) -> None:
    """Where each selector keeps patches: per patch position, the share of training images
    that kept it (mean over seeds), as a heat map on the patch grid."""
    order = [n for n in series_order(runs, selectors)
             if any(series_name(r) == n and r.get("patch_keep_frequency") for r in runs)]
    if not order:
        return
    plt = pyplot()
    fig, axes = plt.subplots(1, len(order), figsize=(2.4 * len(order) + 0.8, 2.8), squeeze=False)
    for ax, name in zip(axes[0], order):
        freq = np.mean([r["patch_keep_frequency"] for r in runs
                        if series_name(r) == name and r.get("patch_keep_frequency")], axis=0)
        side = int(round(len(freq) ** 0.5))
        image = ax.imshow(freq.reshape(side, side), vmin=0, vmax=1, cmap="viridis")
        ax.set_title(name if len(name) <= 22 else name[:20] + "...", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="share of images keeping the patch")
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)
    plt.close(fig)


def write_results(out: Path, meta: dict, runs: list[dict], cfg: dict, status: str,
                  in_progress: Optional[dict] = None) -> None:
    fill_relative(runs, cfg["target_accuracy"])
    meta = dict(meta, status=status, in_progress=in_progress)
    atomic_write_json(out / "results.json", {"meta": meta, "runs": runs})
    write_csv(out / "results.csv", runs, csv_fields(cfg))
    if runs:
        title = f"{cfg['dataset']}, preset {cfg['preset']}, {cfg['budget']} ({cfg['device']})"
        if cfg.get("grid"):
            title = f"grid {grid_text(cfg['grid'])}, {cfg['budget']} ({cfg['device']})"
        plot(runs, cfg["selectors"], out / "accuracy_vs_time.png", title)
        if any(r.get("train_flops") for r in runs):
            plot(runs, cfg["selectors"], out / "accuracy_vs_flops.png", title, x="train_flops")
        plot_keep_frequency(runs, cfg["selectors"], out / "patch_keep_frequency.png", title)


def csv_fields(cfg: dict) -> tuple:
    """RUN_FIELDS; with a grid, ``setting`` and a column per grid key after ``dataset``."""
    if not cfg.get("grid"):
        return RUN_FIELDS
    where = ("setting",) + tuple(k for k in cfg["grid"] if k not in RUN_FIELDS)
    i = RUN_FIELDS.index("dataset") + 1
    return RUN_FIELDS[:i] + where + RUN_FIELDS[i:]


def grid_text(grid: dict) -> str:
    return " x ".join(f"{k}={','.join(map(str, values))}" for k, values in grid.items())


def _load_previous(out: Path, cfg: dict) -> list[dict]:
    path = out / "results.json"
    if not path.is_file():
        return []
    try:
        previous = json.loads(path.read_text())
        old_cfg = previous["meta"]["config"]
        runs = list(previous["runs"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"--resume: cannot read {path} ({type(e).__name__}: {e}); use another --out") from None
    diff = {k: (old_cfg.get(k), cfg.get(k)) for k in COMPARABLE if old_cfg.get(k) != cfg.get(k)}
    # A grid may gain values (new points run, finished ones are kept) but not change its
    # keys: the rows' columns and folders are the keys'.
    old_keys, keys = list(old_cfg.get("grid") or {}), list(cfg.get("grid") or {})
    if old_keys != keys:
        diff["grid keys"] = (old_keys, keys)
    if diff:
        raise ValueError(f"--resume: {path} was made with another configuration "
                         f"({', '.join(f'{k}: {a!r} then, {b!r} now' for k, (a, b) in diff.items())}); "
                         f"use another --out or run without --resume")
    return runs


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    if args.backend == "ray":
        from benchmarks import ray_sweep

        ray_sweep.prepare_environment(private=args.ray_address is None)
        if not ray_sweep.available():
            parser.error('--backend ray needs Ray: pip install -e ".[ray]"')
    out = Path(args.out)
    try:
        check_out(out, "results.json", args.resume, args.overwrite)
        cfg = make_config(args)
        points = grid_points(cfg, args)
        runs = _load_previous(out, cfg) if args.resume else []
    except ValueError as e:
        parser.error(one_line(e))
    try:
        images = load_images(points)
        for point in points:
            where = "" if point.get("setting") is None else f" at {point['setting']}"
            for spec in cfg["selectors"]:  # each agent against its env (e.g. random:k above N), before any run
                try:
                    check_selector(checkable(point), images[images_key(point)], spec)
                except ValueError as e:
                    raise ValueError(f"selector {spec!r}{where}: {e}") from None
    except data_mod.DatasetError as e:  # missing or corrupt data: the message says what to do
        print(f"{parser.prog}: error: {one_line(e)}", file=sys.stderr)
        return 1
    except ValueError as e:
        parser.error(one_line(e))
    except (MemoryError, RuntimeError) as e:
        if not out_of_memory(e):
            raise
        parser.error(memory_message(e))
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg["threads"])  # the runs' thread count (a Ray trial sets its own the same way)
    try:
        with locked(out):  # a second process on the same --out is refused before it deletes or writes
            return sweep(args, argv, cfg, out, runs, points, images)
    except RunError as e:
        parser.error(one_line(e))
    except (MemoryError, RuntimeError) as e:  # the ViTs are built inside the runs
        if not out_of_memory(e):
            raise
        parser.error(memory_message(e))
    finally:
        torch.set_num_threads(threads)


def checkable(point: dict) -> dict:
    """The point as this process can build it to check a selector against it: a Ray
    cluster's head may lack the GPU its trials will use, so the check runs on the CPU."""
    if torch.device(point["device"]).type == "cuda" and not torch.cuda.is_available():
        return {**point, "env": {**point["env"], "device": "cpu", "cuda_graph": False}}
    return point


def sweep(args, argv, cfg: dict, out: Path, runs: list[dict], points: list[dict], images: dict) -> int:
    """Every (setting, seed, selector) run not finished yet, merged into OUT: here,
    interleaved (one epoch per turn, turns in a shuffled round-robin) or one run after
    another, or as Ray Tune trials side by side."""
    with contextlib.ExitStack() as stack:
        cluster = None
        if cfg["backend"] == "ray":  # before anything is written: a Ray that cannot start changes nothing
            from benchmarks import ray_sweep

            cluster = stack.enter_context(ray_sweep.connected(cfg, args))
        if args.overwrite:  # the new settings are valid: only now are the old results removed
            clear_out(out, OUTPUTS)
        plan = [(p, seed, s) for p in points for seed in cfg["seeds"] for s in cfg["selectors"]]
        todo = [t for t in plan if not finished(runs, t[0].get("setting"), t[1], t[2])]
        if args.resume and len(todo) < len(plan):
            print(f"resume: {len(plan) - len(todo)} finished run(s) kept from {out / 'results.json'}",
                  file=sys.stderr)

        # The meta block describes this process's view: a Ray cluster's head may have no GPU.
        meta = meta_block(cfg["device"] if torch.device(cfg["device"]).type == "cpu" or torch.cuda.is_available()
                          else "cpu", cfg)
        meta["device"] = cfg["device"]
        meta["argv"] = list(sys.argv[1:] if argv is None else argv)
        if cluster is not None:
            meta["ray"] = cluster.describe()
        write_results(out, meta, runs, cfg, "running")  # the folder now says it holds a sweep
        start = time.perf_counter()
        # Under equal-time the references run first: the others' budget is their time.
        phases = ([[t for t in todo if t[2] == REFERENCE], [t for t in todo if t[2] != REFERENCE]]
                  if cfg["budget"] == "equal-time" else [todo])
        phases = [phase for phase in phases if phase]
        stop = stack.enter_context(GracefulInterrupt(args.stop_after_steps))
        bar = tqdm(total=len(todo), desc="runs", unit="run", disable=args.no_progress, position=0)
        stack.callback(bar.close)
        for phase in phases:
            if cluster is not None:
                try:
                    interrupted = cluster.run(phase, cfg, args, runs, out, meta, bar, stop)
                    if interrupted is None and stop.requested and phase is not phases[-1]:
                        # Ctrl-C between the phases (Tune's own handler covers a phase)
                        interrupted = next(t for t in todo if not finished(runs, t[0].get("setting"), t[1], t[2]))
                except ray_sweep.TrialsFailed as e:
                    write_results(out, meta, runs, cfg, "interrupted")
                    print(f"\n{e}\n{len(runs)} finished run(s) saved in {out / 'results.json'}; the failed runs "
                          f"keep their last checkpoint under {out / 'runs'}. Fix the cause, then rerun the same "
                          f"command plus --resume.", file=sys.stderr)
                    return 1
            else:
                interrupted = (run_interleaved if cfg["schedule"] == "interleaved" else run_sequential)(
                    phase, cfg, images, args, stop, runs, out, meta, bar)
            if interrupted is not None:
                point, seed, selector = interrupted
                folder = run_dir(out, selector, seed, point.get("setting"))
                where = {} if point.get("setting") is None else {"setting": point["setting"]}
                write_results(out, meta, runs, cfg, "interrupted",
                              {"selector": selector, "seed": seed, **where, "folder": str(folder)})
                print(f"\ninterrupted: {len(runs)} finished run(s) saved in {out / 'results.json'}; runs in "
                      f"progress are checkpointed under {out / 'runs'}. Continue with the same command plus "
                      f"--resume.", file=sys.stderr)
                return 130
    if cfg["backend"] == "ray":  # trials finish in any order: the rows in the plan's order
        rank = {(p.get("setting"), seed, s): i for i, (p, seed, s) in enumerate(plan)}
        runs.sort(key=lambda r: rank.get((r.get("setting"), r["seed"], r["selector"]), len(rank)))
    write_results(out, meta, runs, cfg, "complete")

    elapsed = time.perf_counter() - start
    epochs = f"{cfg['epochs']} epoch" + ("s" if cfg["epochs"] != 1 else "")
    what = (f"{cfg['dataset']}: preset {cfg['preset']}" if not cfg.get("grid")
            else f"grid {grid_text(cfg['grid'])} (base: {cfg['dataset']}, preset {cfg['preset']})")
    print(f"\n## {what}, {epochs}, budget {cfg['budget']}, "
          f"seeds {','.join(map(str, cfg['seeds']))}, device {cfg['device']} ({meta['cpu']}"
          + (f", {meta['gpu']}" if meta["gpu"] else "") + f", {meta['torch_threads']} torch threads)\n")
    print(summary_table(runs, cfg["selectors"], [p.get("setting") for p in points]))
    backend = "" if cluster is None else f"; backend ray ({meta['ray']['address']})"
    print(f"\nmean ± 95% confidence interval over seeds (Student's t); Δ and speed-ups paired by seed against all, "
          f"'*' where the interval excludes 0 (Δ) or 1 (speed-ups, over the seeds that reached the target); "
          f"targets on the {curve_key(runs).split('_')[0]} split; schedule {cfg['schedule']}{backend}; "
          f"training time excludes evaluation. Wall time {elapsed:.0f} s.")
    print(f"results: {out / 'results.json'}, {out / 'results.csv'}, {out / 'accuracy_vs_time.png'}, "
          f"{out / 'patch_keep_frequency.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

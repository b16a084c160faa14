"""What a sweep will run, decided before anything runs: its configuration (checked), its
grid points, the (point, seed, selector) runs in order, each run's folder and budget.

Nothing here builds a model or touches the disk but `load_images`; the front end
(`benchmarks.compare_selectors`) turns flags into this plan, and both backends execute it.
"""
from __future__ import annotations

import argparse
import itertools
import os
from pathlib import Path
from typing import Optional

import torch

from benchmarks.common import parse_list
from benchmarks.sweep.grid import parse_grid
from patchenv import data as data_mod
from patchenv.checks import check_seed
from patchenv.env import resolve_device
from patchenv.cli.options import DEFAULT_PRESET, env_settings
from patchenv.run import Budget

REFERENCE = "all"
BUDGETS = ("equal-epochs", "equal-time", "equal-flops")
# Selectors held to `all`'s time or FLOPs may train more epochs than it, up to this many times.
EPOCH_CAP = 20
BACKENDS = ("local", "ray")


# -- the configuration ------------------------------------------------------------------------
def make_config(args, grid_actions: dict) -> dict:
    """The sweep's configuration from the parsed flags (the selectors are checked by
    `local.check_selector`, once the data is loaded; nothing runs). `grid_actions` are the
    flags a ``--grid`` key may name (`grid.grid_actions`)."""
    if args.epochs <= 0:
        raise ValueError(f"--epochs must be positive, got {args.epochs}")
    if args.target_accuracy is not None and not 0 < args.target_accuracy <= 1:
        raise ValueError(f"--target-accuracy is a fraction in (0, 1], got {args.target_accuracy}")
    if args.stop_at_target and args.target_accuracy is None:
        raise ValueError("--stop-at-target needs --target-accuracy: the target is fixed before any run starts")
    if args.stop_at_target and (args.schedule == "population"):
        raise ValueError("--stop-at-target runs each run through the runner: not with --population")
    if args.horizon_epochs is not None and not args.horizon_epochs > 0:
        raise ValueError(f"--horizon-epochs must be positive, got {args.horizon_epochs}")
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
    # Only when given, so a sweep without them keeps its configuration (and --resume its check) as before
    if args.stop_at_target:
        cfg["stop_at_target"] = True
    if args.horizon_epochs is not None:
        cfg["horizon_epochs"] = args.horizon_epochs
    grid = parse_grid(args.grid, grid_actions)
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
    if args.schedule is not None and args.schedule != "population":
        raise ValueError("--schedule applies to --backend local; Ray runs the trials side by side "
                         "(--population makes each trial a population of a selector's seeds)")
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


def checkable(point: dict) -> dict:
    """The point as this process can build it to check a selector against it: a Ray
    cluster's head may lack the GPU its trials will use, so the check runs on the CPU."""
    if torch.device(point["device"]).type == "cuda" and not torch.cuda.is_available():
        return {**point, "env": {**point["env"], "device": "cpu", "cuda_graph": False}}
    return point


# -- the data ---------------------------------------------------------------------------------
def images_key(point: dict) -> tuple:
    """What identifies a point's data set: points with the same key share one load."""
    env = point["env"]
    return env["dataset"], env.get("data_root"), bool(env.get("download")), env.get("image_size")


def load_images(points: list[dict]) -> dict:
    """Each data set the points use, loaded once: {images_key(point): ImageData}."""
    images = {}
    for point in points:
        key = images_key(point)
        if key not in images:
            images[key] = data_mod.load_dataset(key[0], data_root=key[1], download=key[2], image_size=key[3])
    return images


# -- the runs ---------------------------------------------------------------------------------
def planned_runs(points: list[dict], cfg: dict) -> list[tuple]:
    """Every (point, seed, selector) of the sweep, in the order of its rows: point, then
    seed, then selector (``all`` first)."""
    return [(p, seed, s) for p in points for seed in cfg["seeds"] for s in cfg["selectors"]]


def phases(todo: list[tuple], cfg: dict) -> list[list[tuple]]:
    """The runs in the order they may start: under equal-time (equal-flops) the references
    first, as the others' budget is their time (FLOPs); otherwise, and under equal-flops
    with a target fixed before any run (``--stop-at-target``: the reference's FLOPs are
    computed, `computed_reference`), all at once."""
    waits = cfg["budget"] == "equal-time" or cfg["budget"] == "equal-flops" and not computed_reference(cfg)
    split = [[t for t in todo if t[2] == REFERENCE], [t for t in todo if t[2] != REFERENCE]] if waits else [todo]
    return [phase for phase in split if phase]


def population_groups(todo: list[tuple]) -> list[list[tuple]]:
    """`todo`'s (point, seed, selector) runs grouped into populations (``--population``):
    one per grid point and selector, holding its seeds, in `todo`'s order."""
    groups: dict[tuple, list[tuple]] = {}
    for point, seed, selector in todo:
        groups.setdefault((point.get("setting"), selector), []).append((point, seed, selector))
    return list(groups.values())


def finished(runs: list[dict], setting: Optional[str], seed: int, selector: str) -> bool:
    """Whether `runs` (the rows so far) hold this run."""
    return any(r["selector"] == selector and r["seed"] == seed and r.get("setting") == setting for r in runs)


def run_dir(out: Path, selector: str, seed: int, setting: Optional[str] = None) -> Path:
    """``OUT/runs/<selector>-seed<seed>``, under ``<setting>/`` for a grid point."""
    folder = out / "runs" if setting is None else out / "runs" / safe_name(setting, "._-=,")
    return folder / f"{safe_name(selector, '._-')}-seed{seed}"


def safe_name(name: str, allowed: str) -> str:
    """`name` as a file name: characters other than letters, digits and `allowed` become '_'."""
    return "".join(c if c.isalnum() or c in allowed else "_" for c in name)


def epoch_cap(cfg: dict, selector: str) -> int:
    """The most epochs a run may train: ``--epochs``, or for a selector held to `all`'s time
    or FLOPs `EPOCH_CAP` times as many (`all` itself trains ``--epochs``)."""
    held = cfg["budget"] in ("equal-time", "equal-flops") and selector != REFERENCE
    return EPOCH_CAP * cfg["epochs"] if held else cfg["epochs"]


def computed_reference(cfg: dict) -> bool:
    """Whether the reference's FLOPs budget is computed rather than measured: under
    equal-flops with ``--stop-at-target`` it is what `all` spends in ``--epochs`` epochs
    (``reference_flops``, filled in per point before any run), whatever the `all` run on
    the seed does once it stops at the target."""
    return cfg["budget"] == "equal-flops" and bool(cfg.get("stop_at_target"))


def budget_for(cfg: dict, runs: list[dict], selector: str, seed: int, epochs: Optional[int]) -> Budget:
    """`epochs` (the whole run's when None); under equal-time (equal-flops) a selector also
    stops at the `all` run's training time (FLOPs) on the same seed and grid point, and may
    then train up to `EPOCH_CAP` times as many epochs (the last one cut at the budget).
    With ``--stop-at-target`` every run, `all` included, also stops once an evaluation
    reaches ``--target-accuracy``; under equal-flops the FLOPs are then the computed
    ``reference_flops`` of the point."""
    target = {"accuracy": cfg["target_accuracy"]} if cfg.get("stop_at_target") else {}
    if cfg["budget"] in ("equal-time", "equal-flops") and selector != REFERENCE:
        if computed_reference(cfg):
            return Budget(epochs=epochs if epochs is not None else epoch_cap(cfg, selector),
                          flops=int(cfg["reference_flops"]), **target)
        ref = next(r for r in runs if r["selector"] == REFERENCE and r["seed"] == seed
                   and r.get("setting") == cfg.get("setting"))
        if cfg["budget"] == "equal-flops":
            return Budget(epochs=epochs if epochs is not None else epoch_cap(cfg, selector),
                          flops=int(ref["train_flops"]), **target)
        return Budget(epochs=epochs, seconds=ref["train_time_s"], **target)
    return Budget(epochs=epochs if epochs is not None else cfg["epochs"], **target)


def run_config(cfg: dict, selector: str, seed: int, budget: Budget) -> dict:
    """The configuration a run records in its metrics.json and progress.json."""
    config = {**{k: cfg[k] for k in ("dataset", "preset", "env", "protocol")}, "agent": selector, "seed": seed,
              "budget": budget.record()}
    if cfg.get("setting") is not None:
        config["setting"] = cfg["values"]
    return config

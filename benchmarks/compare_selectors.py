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
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional

import gymnasium as gym
import numpy as np
from tqdm import tqdm

import patchenv  # noqa: F401  (registers the env ids)
from benchmarks.common import fmt_ci, markdown_table, parse_list, pyplot, save_figure, write_csv
from benchmarks.suites import SUITES
from patchenv import data as data_mod
from patchenv import registry
from patchenv.atomic import atomic_write_json
from patchenv.env import resolve_device
from patchenv.interrupt import GracefulInterrupt
from patchenv.meta import meta_block
from patchenv.options import (DEFAULT_PRESET, add_run_arguments, check_out, check_seed, clear_out, env_settings,
                              memory_message, one_line, out_of_memory)
from patchenv.run import SUMMARY_FIELDS, Budget, RunError, has_checkpoint, locked, read_progress, run_training

REFERENCE = "all"
BUDGETS = ("equal-epochs", "equal-time")
# Scalar per-run fields: the CSV's columns, in order (the JSON adds the per-epoch "curve").
RUN_FIELDS = ("selector", "seed", "dataset") + SUMMARY_FIELDS + (
    "speedup_vs_all", "accuracy_delta_vs_all", "target_accuracy", "time_to_target_s", "tokens_to_target",
    "flops_to_target", "speedup_to_target", "speedup_to_target_flops", "accuracy_delta_at_equal_flops")
# Configuration keys that must match for --resume to reuse earlier runs.
COMPARABLE = ("dataset", "preset", "env", "epochs", "budget", "device", "protocol")
OUTPUTS = ("results.json", "results.csv", "accuracy_vs_time.png", "accuracy_vs_flops.png", "patch_keep_frequency.png",
           "runs")


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
    p.add_argument("--schedule", default="interleaved", choices=("interleaved", "sequential"),
                   help="interleaved (default): every run advances one epoch per turn in a shuffled round-robin, "
                        "so load drift falls on every selector alike (a run's numbers do not change); "
                        "sequential: one run after another")
    p.add_argument("--target-accuracy", type=float, default=None,
                   help="test accuracy (fraction) for time_to_target_s; default: the `all` run's final, same seed")
    add_run_arguments(p, out_default="results/compare")
    p.add_argument("--suite", choices=sorted(SUITES), default=None,
                   help="a named standard comparison (benchmarks/suites.py): its settings become the defaults, "
                        "flags given still win; fmnist: " + " ".join(f"{k}={v}" for k, v in SUITES["fmnist"].items()))
    p.add_argument("--stop-after-steps", type=int, default=None, help=argparse.SUPPRESS)  # tests: a simulated Ctrl-C
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
    preset = args.preset or DEFAULT_PRESET
    env = env_settings(args, preset)
    if env["dataset"] not in data_mod.DATASETS:
        raise ValueError(f"unknown dataset {env['dataset']!r}; choose from: {', '.join(data_mod.DATASETS)}")
    env["device"] = str(resolve_device(env.get("device", "auto")))
    return {"dataset": env["dataset"], "preset": preset, "env": env, "epochs": args.epochs,
            "selectors": selectors, "seeds": seeds, "budget": args.budget, "device": env["device"],
            "target_accuracy": args.target_accuracy, "out": str(args.out), "schedule": args.schedule,
            "protocol": args.protocol, "suite": args.suite}


def run_dir(out: Path, selector: str, seed: int) -> Path:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in selector)
    return out / "runs" / f"{safe}-seed{seed}"


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
            resume: bool, keep_checkpoint: bool, last_turn: bool = True) -> dict:
    """One selector on one seed through the runner; returns its metrics.json content."""
    agent = registry.make_from_spec(selector, seed=seed)
    env = make_env(cfg, images, agent)
    folder = run_dir(Path(cfg["out"]), selector, seed)
    config = {**{k: cfg[k] for k in ("dataset", "preset", "env", "protocol")}, "agent": selector, "seed": seed,
              "budget": {"epochs": budget.epochs, "seconds": budget.seconds}}
    log_dir = None if args.log_dir is None else Path(args.log_dir) / folder.name
    try:
        return run_training(env, agent, folder, budget=budget, seed=seed, resume=resume, config=config,
                            masked_eval=selector != REFERENCE and last_turn, checkpoint_every=args.checkpoint_every,
                            keep_checkpoint=keep_checkpoint, log_dir=log_dir, show_progress=not args.no_progress,
                            desc=f"  {selector} seed {seed}", stop=stop, protocol=cfg["protocol"])
    finally:
        env.close()


def budget_for(cfg: dict, runs: list[dict], selector: str, seed: int, epochs: Optional[int]) -> Budget:
    """`epochs` (the whole run's when None); under equal-time a selector also stops at the
    `all` run's training time on the same seed (and may then train more epochs than it)."""
    if cfg["budget"] == "equal-time" and selector != REFERENCE:
        ref = next(r for r in runs if r["selector"] == REFERENCE and r["seed"] == seed)
        return Budget(epochs=epochs, seconds=ref["train_time_s"])
    return Budget(epochs=epochs if epochs is not None else cfg["epochs"])


def record(cfg: dict, selector: str, seed: int, metrics: dict) -> dict:
    return {"selector": selector, "seed": seed, "dataset": cfg["dataset"], **metrics["summary"],
            "curve": metrics["epochs"]}


def run_sequential(todo, cfg, images, args, stop, runs, out, meta, bar) -> Optional[tuple]:
    """One run after another, each to its end; returns the interrupted (selector, seed)."""
    for seed, selector in todo:
        metrics = run_one(cfg, images, selector, seed, budget_for(cfg, runs, selector, seed, None), args, stop,
                          resume=args.resume, keep_checkpoint=False)
        if metrics["meta"]["status"] != "complete":
            return selector, seed
        runs.append(record(cfg, selector, seed, metrics))
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
    for seed, selector in todo:  # a resumed sweep continues from each run's checkpoint
        folder = run_dir(out, selector, seed)
        done_epochs[(seed, selector)] = (len(read_progress(folder)["state"]["history"])
                                         if args.resume and has_checkpoint(folder) else 0)
    active = list(todo)
    cap = cfg["epochs"] if cfg["budget"] == "equal-epochs" else 20 * cfg["epochs"]  # equal-time: up to 20x
    while active:
        for i in rng.permutation(len(active)):
            seed, selector = active[i]
            epochs = done_epochs[(seed, selector)] + 1
            budget = budget_for(cfg, runs, selector, seed, epochs)
            # The masked evaluations are for the final numbers: only on a run's last turn
            # (under equal-time any turn may be the last).
            last_turn = epochs >= cap or budget.seconds is not None
            metrics = run_one(cfg, images, selector, seed, budget, args, stop, resume=True, keep_checkpoint=True,
                              last_turn=last_turn)
            if metrics["meta"]["status"] != "complete":
                return selector, seed
            done_epochs[(seed, selector)] = epochs
            summary = metrics["summary"]
            over = epochs >= cap or (budget.seconds is not None and summary["train_time_s"] >= budget.seconds)
            if over:
                folder = run_dir(out, selector, seed)
                clear_out(folder, ("checkpoints", "progress.json"))  # finished: nothing left to resume
                runs.append(record(cfg, selector, seed, metrics))
                write_results(out, meta, runs, cfg, "running")
                bar.update(1)
        active = [t for t in active if not any(r["selector"] == t[1] and r["seed"] == t[0] for r in runs)]
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
    (None where there is none or a run never reached it)."""
    key = curve_key(runs)
    ref = {r["seed"]: r for r in runs if r["selector"] == REFERENCE}
    for r in runs:
        a = ref.get(r["seed"])
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


def summary_table(runs: list[dict], selectors: list[str]) -> str:
    """Per selector: mean ± the 95% confidence interval over seeds; the differences against
    `all` are paired by seed, and a '*' marks those whose interval excludes zero (one for
    the speed-ups, taken over the seeds that reached the target)."""
    order = list(dict.fromkeys(selectors + [r["selector"] for r in runs]))
    key = curve_key(runs)
    rows = []
    for name in order:
        rs = [r for r in runs if r["selector"] == name]
        if not rs:
            continue

        def col(k, fmt="{:.3f}", scale=1.0, null=None):
            return fmt_ci([r.get(k) for r in rs], fmt, scale, null=None if name == REFERENCE else null)

        rows.append([name, len(rs), col("test_accuracy", "{:.2f}", 100),
                     col("accuracy_delta_vs_all", "{:+.2f}", 100, null=0.0),
                     col("test_accuracy_masked", "{:.2f}", 100), col("test_accuracy_random_masks", "{:.2f}", 100),
                     col("mean_patches_kept", "{:.1f}"), col("train_time_s", "{:.1f}"),
                     col("train_flops", "{:.3g}", 1e-12), col("speedup_vs_all", "{:.2f}"),
                     f"{sum(r.get('flops_to_target') is not None for r in rs)}/{len(rs)}",
                     col("time_to_target_s", "{:.1f}"), col("speedup_to_target", "{:.2f}", null=1.0),
                     col("speedup_to_target_flops", "{:.2f}", null=1.0),
                     col("accuracy_delta_at_equal_flops", "{:+.2f}", 100, null=0.0),
                     col("agent_overhead_share", "{:.1f}", 100)])
    header = ["selector", "seeds", "test acc % (all patches)", "Δ test acc vs all (points, paired)",
              "test acc % (own masks)", "test acc % (random masks)", "patches kept", "train time s",
              "train TFLOPs", "speed-up vs all", "reached target", f"time to target s ({key.split('_')[0]})",
              "speed-up to target", "speed-up to target (FLOPs)",
              f"Δ {key.split('_')[0]} acc at equal FLOPs (points, paired)", "agent overhead %"]
    return markdown_table(header, rows)


def plot(runs: list[dict], selectors: list[str], path: Path, title: str, x: str = "train_time_s") -> None:
    """Accuracy (%) on the curves' split against training time (or FLOPs): every seed
    faintly, the mean across seeds in bold with a band of ± one standard deviation, from
    the untrained t=0 point (chance accuracy, 1 / classes) on."""
    plt = pyplot()
    key = curve_key(runs)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    order = list(dict.fromkeys(selectors + [r["selector"] for r in runs]))
    for i, name in enumerate(order):
        rs = [r for r in runs if r["selector"] == name and r["curve"]]
        if not rs:
            continue
        color = f"C{i % 10}"
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
    order = [n for n in dict.fromkeys(selectors + [r["selector"] for r in runs])
             if any(r["selector"] == n and r.get("patch_keep_frequency") for r in runs)]
    if not order:
        return
    plt = pyplot()
    fig, axes = plt.subplots(1, len(order), figsize=(2.4 * len(order) + 0.8, 2.8), squeeze=False)
    for ax, name in zip(axes[0], order):
        freq = np.mean([r["patch_keep_frequency"] for r in runs
                        if r["selector"] == name and r.get("patch_keep_frequency")], axis=0)
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
    write_csv(out / "results.csv", runs, RUN_FIELDS)
    if runs:
        title = f"{cfg['dataset']}, preset {cfg['preset']}, {cfg['budget']} ({cfg['device']})"
        plot(runs, cfg["selectors"], out / "accuracy_vs_time.png", title)
        if any(r.get("train_flops") for r in runs):
            plot(runs, cfg["selectors"], out / "accuracy_vs_flops.png", title, x="train_flops")
        plot_keep_frequency(runs, cfg["selectors"], out / "patch_keep_frequency.png", title)


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
    if diff:
        raise ValueError(f"--resume: {path} was made with another configuration "
                         f"({', '.join(f'{k}: {a!r} then, {b!r} now' for k, (a, b) in diff.items())}); "
                         f"use another --out or run without --resume")
    return runs


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    out = Path(args.out)
    try:
        check_out(out, "results.json", args.resume, args.overwrite)
        cfg = make_config(args)
        runs = _load_previous(out, cfg) if args.resume else []
    except ValueError as e:
        parser.error(one_line(e))
    try:
        images = data_mod.load_dataset(cfg["dataset"], data_root=cfg["env"].get("data_root"),
                                       download=bool(cfg["env"].get("download")), image_size=cfg["env"].get("image_size"))
        for spec in cfg["selectors"]:  # each agent against its env (e.g. random:k above N), before any run
            try:
                check_selector(cfg, images, spec)
            except ValueError as e:
                raise ValueError(f"selector {spec!r}: {e}") from None
    except data_mod.DatasetError as e:  # missing or corrupt data: the message says what to do
        print(f"{parser.prog}: error: {one_line(e)}", file=sys.stderr)
        return 1
    except ValueError as e:
        parser.error(one_line(e))
    except (MemoryError, RuntimeError) as e:
        if not out_of_memory(e):
            raise
        parser.error(memory_message(e))
    try:
        with locked(out):  # a second process on the same --out is refused before it deletes or writes
            return sweep(args, argv, cfg, out, runs, images)
    except RunError as e:
        parser.error(one_line(e))
    except (MemoryError, RuntimeError) as e:  # the ViTs are built inside the runs
        if not out_of_memory(e):
            raise
        parser.error(memory_message(e))


def sweep(args, argv, cfg: dict, out: Path, runs: list[dict], images) -> int:
    """Every (seed, selector) run not finished yet, merged into OUT: interleaved (one epoch
    per turn, turns in a shuffled round-robin) or one run after another."""
    if args.overwrite:  # the new settings are valid: only now are the old results removed
        clear_out(out, OUTPUTS)
    finished = {(r["selector"], r["seed"]) for r in runs}
    plan = [(seed, s) for seed in cfg["seeds"] for s in cfg["selectors"]]
    todo = [(seed, s) for seed, s in plan if (s, seed) not in finished]
    if args.resume and len(todo) < len(plan):
        print(f"resume: {len(plan) - len(todo)} finished run(s) kept from {out / 'results.json'}", file=sys.stderr)

    meta = meta_block(cfg["device"], cfg)
    meta["argv"] = list(sys.argv[1:] if argv is None else argv)
    write_results(out, meta, runs, cfg, "running")  # the folder now says it holds a sweep
    start = time.perf_counter()
    # Under equal-time the references run first: the others' budget is their time.
    phases = ([[t for t in todo if t[1] == REFERENCE], [t for t in todo if t[1] != REFERENCE]]
              if cfg["budget"] == "equal-time" else [todo])
    with GracefulInterrupt(args.stop_after_steps) as stop:
        bar = tqdm(total=len(todo), desc="runs", unit="run", disable=args.no_progress, position=0)
        try:
            for phase in phases:
                interrupted = (run_interleaved if cfg["schedule"] == "interleaved" else run_sequential)(
                    phase, cfg, images, args, stop, runs, out, meta, bar)
                if interrupted is not None:
                    selector, seed = interrupted
                    folder = run_dir(out, selector, seed)
                    write_results(out, meta, runs, cfg, "interrupted",
                                  {"selector": selector, "seed": seed, "folder": str(folder)})
                    print(f"\ninterrupted: {len(runs)} finished run(s) saved in {out / 'results.json'}; runs in "
                          f"progress are checkpointed under {out / 'runs'}. Continue with the same command plus "
                          f"--resume.", file=sys.stderr)
                    return 130
        finally:
            bar.close()
    write_results(out, meta, runs, cfg, "complete")

    elapsed = time.perf_counter() - start
    epochs = f"{cfg['epochs']} epoch" + ("s" if cfg["epochs"] != 1 else "")
    print(f"\n## {cfg['dataset']}: preset {cfg['preset']}, {epochs}, budget {cfg['budget']}, "
          f"seeds {','.join(map(str, cfg['seeds']))}, device {cfg['device']} ({meta['cpu']}"
          + (f", {meta['gpu']}" if meta["gpu"] else "") + f", {meta['torch_threads']} torch threads)\n")
    print(summary_table(runs, cfg["selectors"]))
    print(f"\nmean ± 95% confidence interval over seeds (Student's t); Δ and speed-ups paired by seed against all, "
          f"'*' where the interval excludes 0 (Δ) or 1 (speed-ups, over the seeds that reached the target); "
          f"targets on the {curve_key(runs).split('_')[0]} split; schedule {cfg['schedule']}; "
          f"training time excludes evaluation. Wall time {elapsed:.0f} s.")
    print(f"results: {out / 'results.json'}, {out / 'results.csv'}, {out / 'accuracy_vs_time.png'}, "
          f"{out / 'patch_keep_frequency.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

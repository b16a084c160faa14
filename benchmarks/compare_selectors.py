"""Compare patch selectors on the same data, seeds and budget: accuracy against training time.

    python -m benchmarks.compare_selectors --dataset digits --preset small --epochs 20 --seeds 0,1 \
        --selectors all,random,agentvit:frequency=6:eps_decay=450,norm_topk --device cpu --out results/digits  # make run

For every seed, ``all`` (every patch, the plain ViT) runs first: it is the reference that
speed-up, accuracy change and the default target accuracy are measured against, on the
same seed. Then each selector gets a fresh env seeded the same way (``reset(seed=s)``: same
ViT initialisation, same data order), built with the selector's own ``env_kwargs()``.

What is measured, and how:
- training time: wall clock of ``agent.train`` epoch by epoch (the env's steps *and* the
  agent's own acting and learning, since both are what a user pays for), the device
  synchronised before the clock is read; evaluation and checkpointing are outside it.
  ``env_step_time_s`` is the env's share (its ``train_time_s``).
- accuracy: on the test split with all patches after every epoch (the paper's protocol),
  and at the end also with the selector's own masks (``evaluate(masks=agent.act)``).
- ``--budget equal-epochs`` (default): every selector trains ``--epochs`` epochs.
  ``--budget equal-time``: each selector trains until its training time reaches the
  ``all`` run's on the same seed, so "does it save time?" is answered at equal cost.
- ``time_to_target_s``: training time at the first evaluation whose accuracy reached the
  target (``--target-accuracy``, by default the ``all`` run's final accuracy, same seed).

Writes ``OUT/results.json`` ({"meta", "runs"}), ``OUT/results.csv`` (one row per run, the
scalar fields) and ``OUT/accuracy_vs_time.png``; prints a Markdown table (mean ± std over
seeds). Interruption: results are written after every finished run; the run in progress
is checkpointed every epoch and on Ctrl-C (it stops after the current step; a second
Ctrl-C stops at once and keeps the last epoch's checkpoint); ``--resume`` skips finished
runs and continues the interrupted one from its checkpoint.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

import agents
import patchenv  # noqa: F401  (registers the env ids)
from agents.base import to_numpy
from benchmarks.common import (PRESETS, fmt_mean_std, markdown_table, meta_block, parse_list, pyplot,
                               save_figure, synchronize, write_csv, write_json)
from patchenv import data as data_mod
from patchenv.env import resolve_device
from patchenv.interrupt import GracefulInterrupt

REFERENCE = "all"
BUDGETS = ("equal-epochs", "equal-time")
# Scalar per-run fields: the CSV's columns, in order (the JSON adds the per-epoch "curve").
RUN_FIELDS = (
    "selector", "seed", "dataset", "epochs", "test_accuracy", "test_accuracy_masked", "mean_patches_kept",
    "train_time_s", "images_per_s", "speedup_vs_all", "accuracy_delta_vs_all", "target_accuracy",
    "time_to_target_s", "speedup_to_target", "agent_overhead_s", "agent_overhead_share",
    "env_step_time_s", "steps", "batch_size", "num_patches", "test_mean_patches_kept_masked", "test_loss",
    "diverged_steps",
)
# Configuration keys that must match for --resume to reuse earlier runs.
COMPARABLE = ("dataset", "preset", "vit", "epochs", "budget", "device", "amp", "compile")


@dataclass
class RunProgress:
    """Where a run stands; saved with its checkpoint so an interrupted run continues."""

    selector: str
    seed: int
    steps: int = 0  # env steps trained
    time_s: float = 0.0  # cumulative training wall clock, seconds
    curve: list = field(default_factory=list)  # one point per evaluation
    kept_sum: float = 0.0  # sum over steps of mean patches kept per image
    loss_sum: float = 0.0
    diverged_steps: int = 0
    epoch_kept_sum: float = 0.0  # the current (unfinished) epoch's part
    epoch_loss_sum: float = 0.0
    epoch_steps: int = 0
    overhead_s: float = 0.0  # agent's own overhead_time_s up to the checkpoint
    env_file: Optional[str] = None
    agent_file: Optional[str] = None


class _StepRecorder(gym.Wrapper):
    """Records each step's patches kept and loss, whatever loop the agent runs (its own
    Gymnasium loop or Stable-Baselines3's), without touching the timing."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.kept: list[float] = []
        self.losses: list[float] = []
        self.diverged = 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.kept.append(info["kept"])
        self.losses.append(info["loss"])
        self.diverged += bool(info.get("diverged", False))
        return obs, reward, terminated, truncated, info

    def drain(self) -> tuple[list, list, int]:
        out = (self.kept, self.losses, self.diverged)
        self.kept, self.losses, self.diverged = [], [], 0
        return out


class Interrupted(Exception):
    pass


# -- configuration ------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.compare_selectors",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="digits", help=f"one of {', '.join(data_mod.DATASETS)} (default digits)")
    p.add_argument("--data-root", default=None, help="data folder (default $PATCHENV_DATA or ~/.cache/patchenv)")
    p.add_argument("--download", action="store_true", help="download the data set if missing (cifar10)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (the `all` run's, under equal-time)")
    p.add_argument("--selectors", default="all,random,norm_topk",
                   help="comma list of agent names (agents.available()), each optionally with keyword "
                        "arguments, e.g. random:k=32; `all` is added first if missing")
    p.add_argument("--seeds", default="0", help="comma list of seeds")
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS),
                   help="ViT size and batch size: " + "; ".join(f"{k}: {v}" for k, v in PRESETS.items()))
    p.add_argument("--batch-size", type=int, default=None, help="override the preset's batch size")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    p.add_argument("--amp", default=None, choices=["bf16"], help="bf16 autocast in the env")
    p.add_argument("--compile", action="store_true", help="torch.compile the ViT's forward in the env")
    p.add_argument("--budget", default="equal-epochs", choices=BUDGETS)
    p.add_argument("--target-accuracy", type=float, default=None,
                   help="test accuracy (fraction) for time_to_target_s; default: the `all` run's final, same seed")
    p.add_argument("--out", default="results/compare", help="output folder")
    p.add_argument("--resume", action="store_true",
                   help="keep finished runs in OUT/results.json and continue an interrupted run")
    p.add_argument("--checkpoint-every", type=int, default=1, help="checkpoint the running run every N epochs")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--stop-after-steps", type=int, default=None, help=argparse.SUPPRESS)  # tests: a simulated Ctrl-C
    return p


def make_config(args) -> dict:
    if args.epochs <= 0:
        raise SystemExit("--epochs must be positive")
    if args.target_accuracy is not None and not 0 < args.target_accuracy <= 1:
        raise SystemExit("--target-accuracy is a fraction in (0, 1]")
    if args.dataset not in data_mod.DATASETS:
        raise SystemExit(f"unknown --dataset {args.dataset!r}; expected one of {', '.join(data_mod.DATASETS)}")
    available = agents.available()
    selectors = parse_list(args.selectors)
    for spec in selectors:
        parse_selector(spec)  # clear error on a malformed NAME:key=value
    unknown = [s for s in selectors if parse_selector(s)[0] not in available]
    if unknown or not selectors:
        raise SystemExit(f"unknown selector(s) {', '.join(unknown) or '(none given)'}; "
                         f"available: {', '.join(available)}")
    selectors = [REFERENCE] + [s for s in dict.fromkeys(selectors) if s != REFERENCE]
    try:
        seeds = list(dict.fromkeys(parse_list(args.seeds, int)))
    except ValueError:
        raise SystemExit(f"--seeds must be a comma list of integers, got {args.seeds!r}") from None
    if not seeds:
        raise SystemExit("--seeds is empty")
    vit = dict(PRESETS[args.preset])
    if args.batch_size is not None:
        vit["batch_size"] = args.batch_size
    return {
        "dataset": args.dataset, "epochs": args.epochs, "selectors": selectors, "seeds": seeds,
        "preset": args.preset, "vit": vit, "device": str(resolve_device(args.device)), "amp": args.amp,
        "compile": bool(args.compile), "budget": args.budget, "target_accuracy": args.target_accuracy,
        "out": str(args.out), "data_root": args.data_root, "checkpoint_every": args.checkpoint_every,
    }


# -- one run --------------------------------------------------------------------------------
def _seed_everything(seed: int) -> None:
    # The env draws from its own generators; agents may use the global ones.
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def parse_selector(spec: str) -> tuple[str, dict]:
    """'random:k=32' -> ('random', {'k': 32}): an agent name, then keyword arguments for
    ``agents.make`` (values read as JSON where they parse, else as strings)."""
    name, *pairs = spec.split(":")
    kwargs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise SystemExit(f"selector {spec!r}: expected NAME or NAME:key=value[:key=value...]")
        try:
            kwargs[key] = json.loads(value)
        except ValueError:
            kwargs[key] = value
    return name, kwargs


def make_agent(spec: str, seed: int):
    """The agent for a selector spec; seeded with the run's seed when it takes a seed."""
    name, kwargs = parse_selector(spec)
    if "seed" not in kwargs:
        try:
            return agents.make(name, seed=seed, **kwargs)
        except TypeError as e:
            if "seed" not in str(e):
                raise
    return agents.make(name, **kwargs)


def make_env(cfg: dict, images: data_mod.ImageData, agent) -> _StepRecorder:
    kwargs = dict(cfg["vit"])
    kwargs.update(device=cfg["device"], amp=cfg["amp"], compile=cfg["compile"])
    kwargs.update(agent.env_kwargs())
    # No passive env checker: it would only warn about torch observations (tensor_obs).
    return _StepRecorder(gym.make("patchenv/PatchSelection-v0", dataset=images, **kwargs))


def _checkpoint_dir(out: Path, selector: str, seed: int) -> Path:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in selector)
    return out / "checkpoints" / f"{safe}-seed{seed}"


def save_run_checkpoint(ckdir: Path, env, agent, progress: RunProgress) -> None:
    """env and agent files named by step, then progress.json (the commit point), then the
    previous step's files are removed: a crash at any point leaves one consistent set."""
    ckdir.mkdir(parents=True, exist_ok=True)
    old = (progress.env_file, progress.agent_file)
    tag = f"step{progress.steps}"
    env_file, agent_file = f"env-{tag}.pt", f"agent-{tag}{getattr(agent, 'save_suffix', '')}"
    env.unwrapped.save_checkpoint(ckdir / env_file)
    agent.save(ckdir / agent_file)
    progress.env_file, progress.agent_file = env_file, agent_file
    write_json(ckdir / "progress.json", asdict(progress))
    for name in old:
        if name and name not in (env_file, agent_file):
            for path in ckdir.glob(name + "*"):
                path.unlink(missing_ok=True)


def load_run_checkpoint(ckdir: Path, env, agent) -> Optional[RunProgress]:
    path = ckdir / "progress.json"
    if not path.is_file():
        return None
    try:
        progress = RunProgress(**json.loads(path.read_text()))
        env.unwrapped.load_checkpoint(ckdir / progress.env_file)
        agent.load(ckdir / progress.agent_file)
    except Exception as e:  # a checkpoint we cannot use costs the run, never the benchmark
        tqdm.write(f"cannot resume from {ckdir} ({type(e).__name__}: {e}); restarting that run", file=sys.stderr)
        return None
    return progress


def run_one(cfg: dict, images, selector: str, seed: int, budget_s: Optional[float], out: Path,
            stop: GracefulInterrupt, resume: bool, show: bool) -> dict:
    """Train and evaluate one selector on one seed; returns its record (relative fields
    are filled in later by `fill_relative`). Raises Interrupted after a requested stop."""
    _seed_everything(seed)
    agent = make_agent(selector, seed)
    env = make_env(cfg, images, agent)
    u = env.unwrapped
    ckdir = _checkpoint_dir(out, selector, seed)
    progress = load_run_checkpoint(ckdir, env, agent) if resume else None
    if progress is None:
        shutil.rmtree(ckdir, ignore_errors=True)
        progress = RunProgress(selector, seed)
        env.reset(seed=seed)
    else:
        tqdm.write(f"{selector} seed {seed}: resuming at step {progress.steps} "
                   f"({progress.steps / u.steps_per_epoch:.2f} epochs)", file=sys.stderr)
    agent.setup(env)
    overhead_at_start = getattr(agent, "overhead_time_s", None)
    spe = u.steps_per_epoch
    device = u.device

    def overhead_now() -> Optional[float]:
        now = getattr(agent, "overhead_time_s", None)
        if now is None:
            return None
        return progress.overhead_s + now - (overhead_at_start or 0.0)

    def done() -> bool:
        if budget_s is not None:
            return progress.time_s >= budget_s
        return progress.steps >= cfg["epochs"] * spe

    bar = tqdm(total=cfg["epochs"] if budget_s is None else round(budget_s, 1), desc=f"  {selector} seed {seed}",
               unit="epoch" if budget_s is None else "s", leave=False, disable=not show, position=1)
    bar.update(len(progress.curve) if budget_s is None else round(progress.time_s, 1))
    try:
        while not done():
            steps = spe - progress.steps % spe  # to the end of this epoch
            t_start = progress.time_s

            def callback(_transition):
                stop.count_step()
                if stop.requested:
                    return False
                if budget_s is not None and t_start + time.perf_counter() - t0 >= budget_s:
                    return False  # note: env.step synchronised the device, so the clock is honest
                return True

            synchronize(device)
            t0 = time.perf_counter()
            agent.train(env, steps=steps, callback=callback)
            synchronize(device)
            progress.time_s += time.perf_counter() - t0

            kept, losses, diverged = env.drain()
            if not kept:
                raise RuntimeError(f"agent {selector!r}: train(env, steps={steps}) ran no env step")
            epochs_before = progress.steps // spe
            progress.steps += len(kept)
            progress.kept_sum += sum(kept)
            progress.loss_sum += sum(losses)
            progress.diverged_steps += diverged
            progress.epoch_kept_sum += sum(kept)
            progress.epoch_loss_sum += sum(losses)
            progress.epoch_steps += len(kept)
            # An agent may overrun the steps it was asked for (SB3 rounds to whole rollouts):
            # an epoch ends when the count crosses a multiple of the epoch length.
            epoch_end = progress.steps // spe > epochs_before
            if epoch_end or done():
                ev = u.evaluate("test")
                n = max(progress.epoch_steps, 1)
                progress.curve.append({
                    "epoch": round(progress.steps / spe, 4), "train_time_s": progress.time_s,
                    "test_accuracy": ev["accuracy"], "test_loss": ev["loss"],
                    "mean_patches_kept": progress.epoch_kept_sum / n, "train_loss": progress.epoch_loss_sum / n,
                })
                progress.epoch_kept_sum = progress.epoch_loss_sum = 0.0
                progress.epoch_steps = 0
                bar.set_postfix(acc=f"{ev['accuracy']:.3f}", time=f"{progress.time_s:.1f}s")
                bar.update(1 if budget_s is None else round(progress.time_s, 1) - bar.n)
            if stop.requested:
                progress.overhead_s = overhead_now() or 0.0
                save_run_checkpoint(ckdir, env, agent, progress)
                raise Interrupted(str(ckdir))
            if epoch_end and not done() and (progress.steps // spe) % max(cfg["checkpoint_every"], 1) == 0:
                progress.overhead_s = overhead_now() or 0.0
                save_run_checkpoint(ckdir, env, agent, progress)
                overhead_at_start = getattr(agent, "overhead_time_s", None)
    finally:
        bar.close()

    # The selector's own masks at test time; count what they keep.
    kept_at_test: list[float] = []

    def masks(obs):
        mask = to_numpy(agent.act(obs))
        kept_at_test.append(float(mask.sum(axis=-1).mean()))
        return mask

    masked = None if selector == REFERENCE else u.evaluate("test", masks=masks)
    final = progress.curve[-1]
    overhead = overhead_now()
    steps = max(progress.steps, 1)
    record = dict.fromkeys(RUN_FIELDS)  # the CSV's column order; relative fields come later
    record.update({
        "selector": selector, "seed": seed, "dataset": cfg["dataset"],
        "epochs": progress.steps // spe if progress.steps % spe == 0 else round(progress.steps / spe, 4),
        "test_accuracy": final["test_accuracy"],
        "test_accuracy_masked": None if masked is None else masked["accuracy"],
        "mean_patches_kept": progress.kept_sum / steps,
        "train_time_s": progress.time_s,
        "images_per_s": progress.steps * u.batch_size / progress.time_s if progress.time_s > 0 else None,
        "agent_overhead_s": overhead,
        "agent_overhead_share": None if overhead is None or progress.time_s <= 0 else overhead / progress.time_s,
        "env_step_time_s": u.train_time_s, "steps": progress.steps, "batch_size": u.batch_size,
        "num_patches": u.num_patches,
        "test_mean_patches_kept_masked": float(np.mean(kept_at_test)) if kept_at_test else None,
        "test_loss": final["test_loss"], "diverged_steps": progress.diverged_steps,
        "curve": progress.curve,
    })
    env.close()
    return record


# -- the comparison -----------------------------------------------------------------------
def fill_relative(runs: list[dict], target: Optional[float]) -> None:
    """speedup_vs_all, accuracy_delta_vs_all, target and time-to-target, against the `all`
    run of the same seed (None where there is none)."""
    ref = {r["seed"]: r for r in runs if r["selector"] == REFERENCE}
    for r in runs:
        a = ref.get(r["seed"])
        tgt = target if target is not None else (a["test_accuracy"] if a else None)
        r["target_accuracy"] = tgt
        r["time_to_target_s"] = _time_to(r["curve"], tgt)
        if a is None:
            r["speedup_vs_all"] = r["accuracy_delta_vs_all"] = r["speedup_to_target"] = None
            continue
        r["speedup_vs_all"] = a["train_time_s"] / r["train_time_s"] if r["train_time_s"] > 0 else None
        r["accuracy_delta_vs_all"] = r["test_accuracy"] - a["test_accuracy"]
        a_tt = _time_to(a["curve"], tgt)
        r["speedup_to_target"] = (a_tt / r["time_to_target_s"]
                                  if a_tt is not None and r["time_to_target_s"] else None)


def _time_to(curve: list[dict], target: Optional[float]) -> Optional[float]:
    if target is None:
        return None
    for point in curve:
        if point["test_accuracy"] >= target - 1e-12:
            return point["train_time_s"]
    return None


def summary_table(runs: list[dict], selectors: list[str]) -> str:
    order = list(dict.fromkeys(selectors + [r["selector"] for r in runs]))
    rows = []
    for name in order:
        rs = [r for r in runs if r["selector"] == name]
        if not rs:
            continue

        def col(key, fmt="{:.3f}", scale=1.0):
            return fmt_mean_std([r.get(key) for r in rs], fmt, scale)

        rows.append([name, len(rs), col("test_accuracy", "{:.2f}", 100), col("test_accuracy_masked", "{:.2f}", 100),
                     col("mean_patches_kept", "{:.1f}"), col("train_time_s", "{:.1f}"), col("images_per_s", "{:.0f}"),
                     col("speedup_vs_all", "{:.2f}"), col("accuracy_delta_vs_all", "{:+.2f}", 100),
                     col("time_to_target_s", "{:.1f}"), col("speedup_to_target", "{:.2f}"),
                     col("agent_overhead_share", "{:.1f}", 100)])
    header = ["selector", "seeds", "test acc % (all patches)", "test acc % (own masks)", "patches kept",
              "train time s", "images/s", "speed-up vs all", "Δ acc vs all (points)", "time to target s",
              "speed-up to target", "agent overhead %"]
    return markdown_table(header, rows)


def plot(runs: list[dict], selectors: list[str], path: Path, title: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    order = list(dict.fromkeys(selectors + [r["selector"] for r in runs]))
    for i, name in enumerate(order):
        rs = [r for r in runs if r["selector"] == name]
        if not rs:
            continue
        color = f"C{i % 10}"
        if len(rs) > 1:  # every seed faintly, their mean by evaluation index in bold
            for r in rs:
                ax.plot([p["train_time_s"] for p in r["curve"]], [p["test_accuracy"] for p in r["curve"]],
                        color=color, alpha=0.25, linewidth=1)
        n = min(len(r["curve"]) for r in rs)
        t = np.mean([[p["train_time_s"] for p in r["curve"][:n]] for r in rs], axis=0)
        acc = np.mean([[p["test_accuracy"] for p in r["curve"][:n]] for r in rs], axis=0)
        ax.plot(t, acc, marker="o", markersize=3, color=color, label=f"{name} (n={len(rs)})")
    ax.set_xlabel("cumulative training time (s), evaluation excluded")
    ax.set_ylabel("test accuracy (all patches)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)
    plt.close(fig)


def write_results(out: Path, meta: dict, runs: list[dict], cfg: dict, status: str,
                  in_progress: Optional[dict] = None) -> None:
    fill_relative(runs, cfg["target_accuracy"])
    meta = dict(meta, status=status, in_progress=in_progress)
    write_json(out / "results.json", {"meta": meta, "runs": runs})
    write_csv(out / "results.csv", runs, RUN_FIELDS)
    if runs:
        title = f"{cfg['dataset']}, preset {cfg['preset']}, {cfg['budget']} ({cfg['device']})"
        plot(runs, cfg["selectors"], out / "accuracy_vs_time.png", title)


def _load_previous(out: Path, cfg: dict) -> list[dict]:
    path = out / "results.json"
    if not path.is_file():
        return []
    try:
        previous = json.loads(path.read_text())
        old_cfg = previous["meta"]["config"]
        runs = list(previous["runs"])
    except (ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"--resume: cannot read {path} ({type(e).__name__}: {e}); use another --out") from None
    diff = {k: (old_cfg.get(k), cfg.get(k)) for k in COMPARABLE if old_cfg.get(k) != cfg.get(k)}
    if diff:
        raise SystemExit(f"--resume: {path} was made with another configuration "
                         f"({', '.join(f'{k}: {a!r} then, {b!r} now' for k, (a, b) in diff.items())}); "
                         f"use another --out or run without --resume")
    return runs


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = make_config(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = _load_previous(out, cfg) if args.resume else []
    if not args.resume:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    finished = {(r["selector"], r["seed"]) for r in runs}
    plan = [(seed, s) for seed in cfg["seeds"] for s in cfg["selectors"]]
    todo = [(seed, s) for seed, s in plan if (s, seed) not in finished]
    if args.resume and len(todo) < len(plan):
        print(f"resume: {len(plan) - len(todo)} finished run(s) kept from {out / 'results.json'}", file=sys.stderr)

    images = data_mod.load_dataset(cfg["dataset"], data_root=args.data_root, download=args.download)
    meta = meta_block(cfg["device"], cfg)
    meta["argv"] = list(sys.argv[1:] if argv is None else argv)
    show = not args.no_progress
    start = time.perf_counter()
    status, current = "complete", None
    with GracefulInterrupt(args.stop_after_steps) as stop:
        try:
            for seed, selector in tqdm(todo, desc="runs", unit="run", disable=not show, position=0):
                current = {"selector": selector, "seed": seed}
                budget_s = None
                if cfg["budget"] == "equal-time" and selector != REFERENCE:
                    ref = next(r for r in runs if r["selector"] == REFERENCE and r["seed"] == seed)
                    budget_s = ref["train_time_s"]
                runs.append(run_one(cfg, images, selector, seed, budget_s, out, stop, args.resume, show))
                shutil.rmtree(_checkpoint_dir(out, selector, seed), ignore_errors=True)
                current = None
                write_results(out, meta, runs, cfg, "partial" if (seed, selector) != todo[-1] else "complete")
        except (Interrupted, KeyboardInterrupt):
            status = "interrupted"
            ckdir = _checkpoint_dir(out, current["selector"], current["seed"]) if current else None
            if current is not None and ckdir is not None and (ckdir / "progress.json").is_file():
                current["checkpoint"] = str(ckdir)
            write_results(out, meta, runs, cfg, status, current)
            print(f"\ninterrupted: {len(runs)} finished run(s) saved in {out / 'results.json'}"
                  + (f"; run in progress checkpointed in {current['checkpoint']}" if current and "checkpoint" in current
                     else "") + ". Continue with the same command plus --resume.", file=sys.stderr)
            return 130
    if not todo:
        write_results(out, meta, runs, cfg, status)
    try:
        (out / "checkpoints").rmdir()  # only when empty: nothing left to resume
    except OSError:
        pass

    elapsed = time.perf_counter() - start
    epochs = f"{cfg['epochs']} epoch" + ("s" if cfg["epochs"] != 1 else "")
    print(f"\n## {cfg['dataset']}: preset {cfg['preset']}, {epochs}, budget {cfg['budget']}, "
          f"seeds {','.join(map(str, cfg['seeds']))}, device {cfg['device']} ({meta['cpu']}"
          + (f", {meta['gpu']}" if meta["gpu"] else "") + ")\n")
    print(summary_table(runs, cfg["selectors"]))
    print(f"\nmean ± std over seeds; accuracy on the test split; training time excludes evaluation. "
          f"Wall time {elapsed:.0f} s.")
    print(f"results: {out / 'results.json'}, {out / 'results.csv'}, {out / 'accuracy_vs_time.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

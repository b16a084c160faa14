"""Command line: ``patchenv train --agent NAME --dataset NAME --epochs E [--out DIR]``.

Trains a ViT in the environment with an agent choosing the patches, one line per epoch
(train loss, test accuracy with all patches, mean patches kept, epoch time), and writes
into ``--out``:

- ``metrics.json``: arguments, hardware and versions, one row per finished epoch, the
  partial epoch when interrupted, and ``status`` (running, interrupted, done);
- ``agent<suffix>``: the agent after the last finished epoch (``agent.save``);
- ``progress.json`` and ``checkpoints/step-<global step>/``: the env's training run, the
  agent and the global RNG states, written at every epoch end and on Ctrl-C, so that
  ``--resume`` continues exactly where the run stopped. ``progress.json`` is written last
  and names the checkpoint, so a crash while writing never leaves a torn one.

Ctrl-C once: the run stops after the current step, checkpoints and exits; Ctrl-C twice:
it aborts at once, and ``--resume`` restarts from the last complete checkpoint.
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from patchenv import registry
from patchenv.atomic import atomic_write_text
from patchenv.interrupt import GracefulInterrupt
from patchenv.presets import PRESETS

# Arguments that define the training run: --resume takes them from the saved run (they
# may be repeated, not changed). Their defaults for a fresh run:
RUN_DEFAULTS = {"agent": "all", "agent_arg": [], "dataset": "digits", "preset": "paper", "batch_size": None,
                "seed": 0, "lr": None, "n_patch_desired": None, "amp": None}


class CLIError(Exception):
    """A user error: printed as ``patchenv: error: ...`` with exit status 2."""


# -- building the run ------------------------------------------------------------------------
def parse_agent_args(pairs) -> dict:
    """``KEY=VALUE`` strings -> kwargs; values are read as JSON when they parse (numbers,
    true/false, null), else kept as strings."""
    kwargs = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CLIError(f"--agent-arg expects KEY=VALUE, got {pair!r}")
        try:
            kwargs[key] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key] = value
    return kwargs


def make_agent(args):
    names = registry.available()
    if args.agent not in names:
        raise CLIError(f"unknown agent {args.agent!r}; choose from: {', '.join(names)}")
    kwargs = parse_agent_args(args.agent_arg)
    try:
        return registry.make(args.agent, **kwargs)
    except (TypeError, ValueError) as e:
        raise CLIError(f"cannot build agent {args.agent!r} with {kwargs}: {e}") from None


def make_env(args, agent):
    import gymnasium as gym

    import patchenv  # noqa: F401  (registers the env ids)
    from patchenv.data import DATASETS

    if args.dataset not in DATASETS:
        raise CLIError(f"unknown dataset {args.dataset!r}; choose from: {', '.join(DATASETS)}")
    kwargs = dict(PRESETS[args.preset])
    if args.batch_size is not None:
        kwargs["batch_size"] = args.batch_size
    for key in ("lr", "n_patch_desired", "amp"):
        if getattr(args, key) is not None:
            kwargs[key] = getattr(args, key)
    kwargs.update(agent.env_kwargs())
    return gym.make("patchenv/PatchSelection-v0", dataset=args.dataset, data_root=args.data_root,
                    download=args.download, device=args.device, **kwargs)


def environment_info(env) -> dict:
    u = env.unwrapped
    info = {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
            "device": str(u.device), "cpu_threads": torch.get_num_threads()}
    if u.device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(u.device)
    try:
        import gymnasium
        import stable_baselines3
        info.update(gymnasium=gymnasium.__version__, stable_baselines3=stable_baselines3.__version__)
    except ImportError:  # pragma: no cover
        pass
    return info


# -- checkpoints -----------------------------------------------------------------------------
def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out: Path, env, agent, progress: dict) -> None:
    """env + agent + RNGs into a fresh folder, then progress.json (atomically) names it;
    older checkpoint folders are removed afterwards."""
    from patchenv.env import atomic_torch_save

    u = env.unwrapped
    name = f"step-{u.global_step:09d}"
    folder = out / "checkpoints" / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    u.save_checkpoint(folder / "env.pt")
    agent.save(folder / f"agent{getattr(agent, 'save_suffix', '')}")
    atomic_torch_save(_rng_state(), folder / "rng.pt")
    atomic_write_text(out / "progress.json", json.dumps({**progress, "checkpoint": f"checkpoints/{name}"}, indent=2))
    for old in (out / "checkpoints").iterdir():
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)


def load_progress(out: Path) -> dict:
    path = out / "progress.json"
    if not path.exists():
        raise CLIError(f"nothing to resume in {out}: no progress.json (start the run without --resume)")
    try:
        progress = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CLIError(f"cannot read {path}: {e}") from None
    if not (out / progress.get("checkpoint", "?")).is_dir():
        raise CLIError(f"{path} names checkpoint {progress.get('checkpoint')!r}, which is missing")
    return progress


# -- the training loop -------------------------------------------------------------------------
def train(args, step_callback: Optional[Callable[[Any], Any]] = None) -> dict:
    """Run (or resume) ``patchenv train``; returns the metrics written to metrics.json.

    ``step_callback(transition)`` is called after every env step (tests use it to
    simulate an interruption at a step boundary by raising KeyboardInterrupt)."""
    from tqdm import tqdm

    if args.out is None:
        args.out = f"runs/{args.agent or RUN_DEFAULTS['agent']}-{args.dataset or RUN_DEFAULTS['dataset']}"
    out = Path(args.out)
    progress = None
    if args.resume:
        progress = load_progress(out)
        saved = progress["args"]
        changed = {}
        for key in RUN_DEFAULTS:
            given = getattr(args, key)
            if given is None or (key == "agent_arg" and not given):
                setattr(args, key, saved.get(key))
            elif given != saved.get(key):
                changed[key] = (saved.get(key), given)
        if changed:
            detail = ", ".join(f"--{k.replace('_', '-')} was {a!r}, now {b!r}" for k, (a, b) in changed.items())
            raise CLIError(f"--resume continues a run with its own settings; it cannot change them: {detail}")
        if args.epochs is None:
            args.epochs = saved.get("epochs", 1)
    else:
        for key, default in RUN_DEFAULTS.items():
            if getattr(args, key) is None:
                setattr(args, key, default)
        if args.epochs is None:
            args.epochs = 1
        if (out / "progress.json").exists() and not args.overwrite:
            raise CLIError(f"{out} already holds a run; pass --resume to continue it, --overwrite to start over, "
                           "or another --out")
        if args.overwrite:
            for stale in ("progress.json", "metrics.json"):
                (out / stale).unlink(missing_ok=True)
            shutil.rmtree(out / "checkpoints", ignore_errors=True)

    agent = make_agent(args)
    try:
        env = make_env(args, agent)
    except ValueError as e:  # bad configuration; DatasetError (missing/corrupt data) is caught in main
        raise CLIError(str(e)) from None
    u = env.unwrapped
    if progress is not None:
        folder = out / progress["checkpoint"]
        u.load_checkpoint(folder / "env.pt")
        agent.load(folder / f"agent{getattr(agent, 'save_suffix', '')}")
        _set_rng_state(torch.load(folder / "rng.pt", weights_only=False))
        history, partial = progress["epochs"], progress.get("partial")
        print(f"resuming {out} at epoch {len(history) + 1}, global step {u.global_step}", flush=True)
    else:
        torch.manual_seed(args.seed)  # the global RNG some agents sample from (SB3)
        np.random.seed(args.seed)
        random.seed(args.seed)
        env.reset(seed=args.seed)
        history, partial = [], None

    run_args = {k: v for k, v in vars(args).items()}
    metrics = {"status": "running", "args": run_args, "environment": environment_info(env), "epochs": history,
               "partial": partial}

    def write_metrics(status: str) -> None:
        metrics.update(status=status, epochs=history, partial=partial)
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))

    def checkpoint() -> None:
        save_checkpoint(out, env, agent, {"args": run_args, "epochs": history, "partial": partial})

    spe = u.steps_per_epoch
    epoch = len(history) + 1
    out.mkdir(parents=True, exist_ok=True)
    with GracefulInterrupt() as stop:
        while epoch <= args.epochs:
            acc = partial or {"epoch": epoch, "steps": 0, "loss_sum": 0.0, "accuracy_sum": 0.0, "kept_sum": 0.0,
                              "wall_time_s": 0.0, "vit_train_time_s": 0.0, "agent_overhead_s": 0.0}
            partial = acc
            remaining = epoch * spe - u.global_step  # the env's own counter: exact across resumes
            at_boundary = [False]

            def on_step(tr, bar):
                acc["steps"] += 1
                acc["loss_sum"] += tr.info["loss"]
                acc["accuracy_sum"] += tr.info["accuracy"]
                acc["kept_sum"] += tr.info["kept"]
                bar.update(1)
                if step_callback is not None:
                    try:
                        step_callback(tr)
                    except KeyboardInterrupt:
                        at_boundary[0] = True  # the step and the agent's update are complete
                        raise
                return not stop.requested

            vit_before, overhead_before = u.train_time_s, getattr(agent, "overhead_time_s", 0.0)
            t0 = time.perf_counter()
            aborted = False
            try:
                with tqdm(total=spe, initial=spe - remaining, desc=f"epoch {epoch}/{args.epochs}", leave=False,
                          disable=args.quiet, dynamic_ncols=True) as bar:
                    if remaining > 0:
                        agent.train(env, steps=remaining, callback=lambda tr: on_step(tr, bar))
            except KeyboardInterrupt:
                aborted = True
            acc["wall_time_s"] += time.perf_counter() - t0
            acc["vit_train_time_s"] += u.train_time_s - vit_before
            acc["agent_overhead_s"] += getattr(agent, "overhead_time_s", 0.0) - overhead_before

            if aborted or stop.requested or u.global_step < epoch * spe:
                if aborted and not at_boundary[0]:
                    # Interrupted inside a step: the env may be half-updated; keep the last
                    # complete checkpoint and say where a resume restarts.
                    write_metrics("interrupted")
                    print(f"aborted mid-step; --resume restarts from the last checkpoint in {out}",
                          file=sys.stderr, flush=True)
                else:
                    checkpoint()
                    write_metrics("interrupted")
                    print(f"interrupted at epoch {epoch}, step {u.global_step}; checkpoint saved. "
                          f"Continue with: patchenv train --resume --out {out} ...", file=sys.stderr, flush=True)
                metrics["interrupted"] = True
                return metrics

            ev = u.evaluate("test")
            steps = max(acc["steps"], 1)
            row = {"epoch": epoch, "global_step": u.global_step,
                   "train_loss": acc["loss_sum"] / steps, "train_accuracy": acc["accuracy_sum"] / steps,
                   "test_loss": ev["loss"], "test_accuracy": ev["accuracy"],
                   "mean_patches_kept": acc["kept_sum"] / steps,
                   "epoch_time_s": acc["wall_time_s"], "vit_train_time_s": acc["vit_train_time_s"],
                   "agent_overhead_s": acc["agent_overhead_s"]}
            history.append(row)
            partial = None
            line = (f"epoch {epoch:3d}/{args.epochs}  train loss {row['train_loss']:.4f}  "
                    f"test acc {100 * row['test_accuracy']:.2f}%  kept {row['mean_patches_kept']:.1f}/"
                    f"{u.num_patches}  time {row['epoch_time_s']:.2f}s")
            if args.quiet:
                print(line, flush=True)
            else:
                tqdm.write(line)
            agent.save(out / f"agent{getattr(agent, 'save_suffix', '')}")
            checkpoint()
            write_metrics("running")
            epoch += 1
    write_metrics("done")
    return metrics


# -- entry point -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="patchenv", description="Train a ViT while an RL agent chooses its patches.")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a ViT with an agent choosing the patches",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--agent", default=None, help="registered agent name (default all; see agents.available())")
    t.add_argument("--agent-arg", action="append", default=None, metavar="KEY=VALUE",
                   help="agent keyword argument, repeatable (e.g. --agent-arg frequency=10)")
    t.add_argument("--dataset", default=None, help="cifar10, fashion_mnist, digits or synthetic (default digits)")
    t.add_argument("--data-root", default=None, help="data cache folder (default $PATCHENV_DATA or ~/.cache/patchenv)")
    t.add_argument("--download", action="store_true", help="download the data set if it is missing")
    t.add_argument("--epochs", type=int, default=None,
                   help="total epochs (default 1; with --resume: the saved total, or a new one)")
    t.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="ViT size and batch size: " + "; ".join(f"{k}: {v}" for k, v in PRESETS.items()))
    t.add_argument("--batch-size", type=int, default=None, help="overrides the preset's batch size")
    t.add_argument("--lr", type=float, default=None, help="ViT learning rate (default the paper's 1e-3)")
    t.add_argument("--n-patch-desired", type=int, default=None, help="target patches kept (default 30)")
    t.add_argument("--amp", choices=["bf16"], default=None, help="bfloat16 autocast for the ViT")
    t.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    t.add_argument("--seed", type=int, default=None, help="seeds the run (default 0)")
    t.add_argument("--out", default=None, help="output folder (default runs/<agent>-<dataset>)")
    t.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    t.add_argument("--overwrite", action="store_true", help="start over in an --out that holds a run")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv=None) -> int:
    from patchenv.data import DatasetError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    start = time.perf_counter()
    try:
        metrics = train(args)
    except CLIError as e:
        parser.error(str(e))  # exits with status 2
    except DatasetError as e:  # missing or corrupt data: the message says what to do
        print(f"patchenv: error: {e}", file=sys.stderr)
        return 1
    if metrics.get("interrupted"):
        return 130
    print(f"done in {time.perf_counter() - start:.1f}s; results in {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Command line: ``patchenv train --agent NAME[:key=value...] --dataset NAME --epochs E --out DIR``.

Trains a ViT in the environment with an agent choosing the patches, through the one
runner (`patchenv.run`), one line per epoch (train loss, mean reward, test accuracy with
all patches, patches kept, epoch time), and writes into ``--out``:

- ``metrics.json``: the ``meta`` block (date, hardware, versions, git commit, the full
  configuration, ``status`` running / interrupted / complete), one row per evaluation
  (``epochs``), the unfinished epoch (``partial``) and the final ``summary``;
- ``agent<suffix>``: the trained agent (``agents.load`` rebuilds it);
- ``progress.json`` and ``checkpoints/step-<global step>/``: env, agent and every RNG,
  so that ``--resume`` continues exactly where the run stopped (it takes the saved
  settings; ``--epochs`` may extend the run).

Ctrl-C once: the run stops after the current step, checkpoints and exits (status 130);
twice: it stops at once, and ``--resume`` restarts from the last complete checkpoint.
SIGTERM (a cluster scheduler's stop: Slurm preemption, Kubernetes eviction) does the same,
exit status 143.

    patchenv train --agent random:k=16 --dataset digits --preset small --epochs 5 --device cpu
    patchenv agents            # the registered agents
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import sys
import time
import warnings
from pathlib import Path

from patchenv import registry
from patchenv.atomic import WriteError
from patchenv.checks import SEED_MAX, check_seed, one_line, out_of_memory_as
from patchenv.cli.options import DEFAULT_PRESET, add_run_arguments, check_out, env_settings, parse_key_values
from patchenv.env.config import EnvConfig
from patchenv.run import Budget, RunError, eval_split, has_checkpoint, print_line, read_progress, run_training

# What --resume takes from the saved run (given again, it must be the same).
RUN_KEYS = ("agent", "dataset", "preset", "env", "seed")


class CLIError(Exception):
    """A user error: printed as ``patchenv train: error: ...`` with exit status 2."""


def _run_config(args) -> dict:
    agent_spec = args.agent or "all"
    agent_kwargs = parse_key_values(args.agent_arg)
    preset = args.preset or DEFAULT_PRESET
    env = env_settings(args, preset)
    return {"agent": agent_spec, "agent_kwargs": agent_kwargs, "dataset": env["dataset"], "preset": preset,
            "env": env, "seed": 0 if args.seed is None else args.seed, "protocol": args.protocol,
            "log_dir": None if args.log_dir is None else str(args.log_dir)}


def _resume_config(args, out: Path) -> tuple[dict, dict]:
    """The saved run's configuration (checked against what was given again) and its
    progress.json, read once."""
    try:
        progress = read_progress(out, trust=args.trust_checkpoint)
    except RunError as e:
        raise CLIError(f"{e} (start the run without --resume)") from None
    saved = progress["config"]
    types = {"agent": str, "agent_kwargs": dict, "dataset": str, "preset": str, "env": dict, "seed": int}
    wrong = [k for k, t in types.items() if not isinstance(saved.get(k), t)]
    if wrong:
        raise CLIError(f"{out / 'progress.json'} is damaged: its configuration lacks {', '.join(wrong)} "
                       f"(start the run without --resume)")
    given = _run_config(args)
    explicit = {"agent": args.agent is not None or bool(args.agent_arg), "seed": args.seed is not None,
                "preset": args.preset is not None}
    changed = [f"--{k} {given[k]} (saved: {saved[k]})" for k in ("agent", "seed", "preset")
               if explicit[k] and given[k] != saved[k]]
    if explicit["agent"] and given["agent_kwargs"] != saved["agent_kwargs"]:
        changed.append(f"--agent-arg {given['agent_kwargs']} (saved: {saved['agent_kwargs']})")
    # An env flag given again must equal the saved run's value: the saved settings, or the
    # env's default for a field the run left at it.
    defaults = {f.name: f.default for f in dataclasses.fields(EnvConfig)}
    for k, value in given["env"].items():
        before = saved["env"].get(k, defaults.get(k))
        if getattr(args, k, None) is not None and value != before:
            changed.append(f"--{k.replace('_', '-')} {value} (saved: {before})")
    if changed:
        raise CLIError(f"--resume continues a run with its own settings; it cannot change {'; '.join(changed)} "
                       f"(--epochs, --log-dir and --no-progress may change)")
    # What may change is said. The log folder is the saved one unless another is given.
    if args.epochs is not None and saved.get("epochs") not in (None, args.epochs):
        print(f"resume: the epoch budget changes from {saved['epochs']} to {args.epochs}", flush=True)
    if args.log_dir is None:
        args.log_dir = saved.get("log_dir")
    elif saved.get("log_dir") not in (None, str(args.log_dir)):
        print(f"resume: logging moves from {saved['log_dir']} to {args.log_dir}", flush=True)
    saved["log_dir"] = None if args.log_dir is None else str(args.log_dir)
    return saved, progress


def _make_agent(spec: str, seed: int, kwargs: dict):
    """The agent of `spec`; a spec that names a file gets a hint (it is a common slip)."""
    try:
        return registry.make_from_spec(spec, seed=seed, **kwargs)
    except ValueError as e:
        if Path(spec).suffix in (".json", ".pt", ".zip") or Path(spec).exists():
            raise ValueError(f"{e} (--agent takes a registered agent name, not a saved agent file; continue a run "
                             f"with --resume --out DIR, or load the file with patchenv.registry.load)") from None
        raise


def train(args) -> dict:
    """Run (or resume) ``patchenv train``; returns the metrics written to metrics.json."""
    import gymnasium as gym

    import patchenv  # noqa: F401  (registers the env ids)

    out = Path(args.out or f"runs/{(args.agent or 'all').split(':')[0]}-{args.dataset or 'digits'}")
    args.out = str(out)
    try:
        with out_of_memory_as(CLIError):
            check_out(out, "metrics.json", args.resume, args.overwrite)
            registry.import_plugins(args.plugin)  # agents of the user's own, before any name is resolved
            config, progress = _resume_config(args, out) if args.resume else (_run_config(args), None)
            epochs = args.epochs or config.get("epochs") or 1
            if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
                raise ValueError(f"{out / 'progress.json'} is damaged: epochs {epochs!r} (give --epochs)")
            config["epochs"] = epochs
            agent = _make_agent(config["agent"], config["seed"], config["agent_kwargs"])
            env = gym.make("patchenv/PatchSelection-v1", **{**config["env"], "budget_epochs": epochs,
                                                            **agent.env_kwargs()})
    except ValueError as e:  # bad settings; missing or corrupt data are caught in main
        raise CLIError(str(e)) from None
    try:
        with out_of_memory_as(CLIError):  # the ViT is built by the first reset, inside the run
            if args.resume:
                print(f"resuming {out} at global step {progress['state']['total']['steps']}", flush=True)
            show = not args.no_progress
            u = env.unwrapped
            split = eval_split(u, config.get("protocol", "val"))

            def on_epoch(row: dict) -> None:
                print_line(f"epoch {row['epoch']:3}/{epochs}  train loss {row['train_loss']:.4f}  "
                           f"reward {row['mean_reward']:+.3f}  {split} acc {100 * row[split + '_accuracy']:.2f}%  "
                           f"kept {row['mean_patches_kept']:.1f}/{u.num_patches}  time {row['epoch_time_s']:.2f}s", show)

            # The runner holds --out's lock from here on, checks the agent against the env
            # before it deletes anything (--overwrite) and saves the trained agent.
            metrics = run_training(env, agent, out, budget=Budget(epochs=epochs), seed=config["seed"],
                                   resume=args.resume, config=config, checkpoint_every=args.checkpoint_every,
                                   log_dir=args.log_dir, show_progress=show, on_epoch=on_epoch,
                                   protocol=config.get("protocol", "val"), overwrite=args.overwrite, save_agent=True,
                                   masked_eval=agent.name != "all",  # every patch is what `all` keeps anyway
                                   trust_checkpoint=args.trust_checkpoint)
            if metrics["meta"]["status"] != "complete":
                print(f"interrupted at step {u.global_step}; continue with: patchenv train --resume --out {out}",
                      file=sys.stderr, flush=True)
    except RunError as e:  # the agent does not fit the env, another writer holds --out, a damaged checkpoint
        raise CLIError(str(e)) from None
    return metrics


def how_to_continue(out: Path) -> str:
    """What continues a run stopped by a write that failed, once the disk takes writes again."""
    if has_checkpoint(out):
        return f"once it can be written, continue with: patchenv train --resume --out {out}"
    if (out / "metrics.json").is_file():  # an epoch ended without a checkpoint (--checkpoint-every)
        return "no checkpoint was saved yet; once it can be written, start over with --overwrite"
    return "nothing was saved yet; once it can be written, run the same command again"


def list_agents() -> int:
    for name in registry.available():
        print(name)
    return 0


def _seed(text: str) -> int:
    try:
        return check_seed(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, {SEED_MAX}], got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("patchenv")
    except PackageNotFoundError:  # running from a source tree
        ver = "unknown"
    parser = argparse.ArgumentParser(prog="patchenv", description="Train a ViT while an RL agent chooses its patches.")
    parser.add_argument("--version", action="version", version=f"patchenv {ver}")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a ViT with an agent choosing the patches", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--agent", default=None, metavar="NAME[:key=value...]",
                   help="registered agent and its arguments (default: all; `patchenv agents` lists them)")
    t.add_argument("--agent-arg", action="append", default=None, metavar="KEY=VALUE",
                   help="agent keyword argument, repeatable (same as NAME:KEY=VALUE)")
    t.add_argument("--epochs", type=int, default=None,
                   help="total epochs (default: 1; with --resume: the saved total, or a new one)")
    t.add_argument("--seed", type=_seed, default=None,
                   help=f"seeds the ViT, the data order and the agent, in [0, {SEED_MAX}] (default: 0)")
    add_run_arguments(t, out_default=None)
    t.add_argument("--quiet", dest="no_progress", action="store_true", help=argparse.SUPPRESS)  # old name
    sub.add_parser("agents", help="list the registered agents")
    parser.train_parser = t  # its usage line goes with train's errors
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning during a run as one line, like the errors (not Python's two-line form)."""
    print(f"patchenv train: warning: {one_line(message)}", file=sys.stderr if file is None else file, flush=True)


def main(argv=None) -> int:
    from patchenv.data import DatasetError

    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:  # a misspelt flag belongs to the subcommand: its usage line, and the closest flag
        sub = parser.train_parser if args.command == "train" else parser
        flags = [f for action in sub._actions for f in action.option_strings]
        close = difflib.get_close_matches(extras[0].split("=")[0], flags, n=1)
        sub.error(f"unrecognized arguments: {' '.join(extras)}" + (f" (did you mean {close[0]}?)" if close else ""))
    if args.command == "agents":
        try:
            return list_agents()
        except ValueError as e:  # a plug-in named in $PATCHENV_PLUGINS that cannot be imported
            print(f"patchenv: error: {one_line(e)}", file=sys.stderr)
            return 2
    sub = parser.train_parser
    if args.epochs is not None and args.epochs < 1:
        sub.error(f"--epochs must be at least 1, got {args.epochs}")
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            metrics = train(args)
    except CLIError as e:
        sub.error(one_line(e))  # the subcommand's usage line, exit status 2
    except DatasetError as e:  # missing or corrupt data: the message says what to do
        print(f"patchenv: error: {one_line(e)}", file=sys.stderr)
        return 1
    except WriteError as e:  # a full disk, a read-only folder: what was written before stays
        print(f"patchenv: error: {one_line(e)} ({how_to_continue(Path(args.out))})", file=sys.stderr)
        return 1
    if metrics["meta"]["status"] != "complete":
        return metrics["meta"].get("exit_status", 130)  # 130 after Ctrl-C, 143 after SIGTERM
    print(result_lines(metrics, Path(args.out), args.log_dir, time.perf_counter() - start), flush=True)
    return 0


def result_lines(metrics: dict, out: Path, log_dir, seconds: float) -> str:
    """What the run was for, said at its end: the test accuracy with every patch and with the
    agent's own masks, and where every file is."""
    s = metrics["summary"]
    own = ("" if s.get("test_accuracy_masked") is None else
           f"; with the agent's masks {100 * s['test_accuracy_masked']:.2f}% "
           f"({s['test_mean_patches_kept_masked']:.1f} of {s['num_patches']} patches)")
    files = [out / name for name in ("metrics.json", "progress.json") if (out / name).is_file()]
    files += sorted(out.glob("agent.*"))
    lines = [f"test accuracy {100 * s['test_accuracy']:.2f}% with every patch{own}; trained on "
             f"{s['mean_patches_kept']:.1f} patches per image on average",
             f"done in {seconds:.1f}s; results: " + ", ".join(map(str, files))]
    if log_dir:
        lines.append(f"logs: {log_dir} (steps.csv, epochs.csv; tensorboard --logdir {log_dir})")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

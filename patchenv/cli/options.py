"""The command-line vocabulary every front end shares (``patchenv train``,
``compare_selectors``, sweeps): the same flag for the same thing everywhere.

- env settings: ``--preset`` plus one flag per `patchenv.env.config.EnvConfig` field
  (``--dataset``, ``--batch-size``, ``--lr``, ``--alpha``, ``--n-patch-desired``, ...);
  a flag given overrides the preset;
- the agent: ``NAME[:key=value...]`` specs (`patchenv.registry.parse_spec`);
- output: ``--out``, ``--resume``, ``--overwrite``, ``--no-progress``, ``--log-dir``,
  ``--checkpoint-every``.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from patchenv.env.config import add_env_arguments, env_kwargs_from_args
from patchenv.env.presets import PRESETS

DEFAULT_PRESET = "paper"
# What a front end uses when the flag is not given (the env's own default is the paper's
# CIFAR-10, which needs a download): the offline digits.
FRONT_END_DEFAULTS = {"dataset": "digits"}
# --protocol val (the default) carves this share of the training set for validation when
# --val-fraction is not given: per-epoch curves and targets never see the test split.
DEFAULT_VAL_FRACTION = 0.1


def add_run_arguments(parser: argparse.ArgumentParser, *, out_default: Optional[str]) -> None:
    """Flags for the env, its preset and the output folder."""
    # --help says the defaults a front end uses, which are not the env's own.
    add_env_arguments(parser, front_end_defaults={
        **FRONT_END_DEFAULTS, "val_fraction": f"{DEFAULT_VAL_FRACTION} under --protocol val, the default; 0 under paper"})
    parser.add_argument("--protocol", choices=("val", "paper"), default="val",
                        help="val (default): per-epoch evaluation and targets on a validation split carved from the "
                             f"training set (--val-fraction, default {DEFAULT_VAL_FRACTION}), the test split once at "
                             "the end; paper: the notebook's protocol, the test split after every epoch")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="ViT size and batch size (default: %s, slow on a CPU; try small): " % DEFAULT_PRESET
                             + "; ".join(f"{k}: {v}" for k, v in PRESETS.items()))
    parser.add_argument("--plugin", action="append", default=None, metavar="MODULE_OR_FILE.py",
                        help="import this module (or .py file) first, so the agents it registers with "
                             "@patchenv.registry.register can be named; repeatable (also: $PATCHENV_PLUGINS, "
                             "comma-separated)")
    out = parser.add_argument_group("output")
    out.add_argument("--out", default=out_default, type=folder_path,
                     help="output folder (default: " + (out_default or "runs/<agent>-<dataset>") + ")")
    out.add_argument("--resume", action="store_true", help="continue the work saved in --out")
    out.add_argument("--trust-checkpoint", action="store_true",
                     help="with --resume: also continue a checkpoint an older patchenv wrote, which is read by "
                          "unpickling it and so can run code; only for files you made (docs/security.md)")
    out.add_argument("--overwrite", action="store_true",
                     help="start over in an --out that holds results (deleted only once the new settings are valid)")
    out.add_argument("--no-progress", action="store_true", help="no progress bars")
    out.add_argument("--log-dir", default=None, type=log_folder_path,
                     help="write per-step and per-epoch scalars there (CSV, and TensorBoard when installed)")
    out.add_argument("--checkpoint-every", type=positive_int, default=1, metavar="EPOCHS",
                     help="checkpoint every N epochs (default: 1); always on a clean stop")


def folder_path(text: str) -> str:
    """argparse type of a folder the run creates or reuses: not empty, not under a file
    (a file at the path itself is refused by `check_out`, which knows what it may hold)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder, got an empty path")
    path = Path(text)
    blocker = next((p for p in path.parents if p.exists()), None)
    if not path.exists() and blocker is not None and not blocker.is_dir():
        raise argparse.ArgumentTypeError(f"{text} cannot be a folder: {blocker} is a file")
    return text


def log_folder_path(text: str) -> str:
    """argparse type of --log-dir: a folder (new or existing), not a file."""
    text = folder_path(text)
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; expected a folder")
    return text


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def env_settings(args: argparse.Namespace, preset: str) -> dict:
    """The env's keyword arguments: the preset, then every env flag that was given, then
    the validation split the protocol asks for."""
    kwargs = {**FRONT_END_DEFAULTS, **PRESETS[preset]}
    kwargs.update(env_kwargs_from_args(args))
    protocol = getattr(args, "protocol", "val")
    if protocol == "paper" and kwargs.get("val_fraction"):
        raise ValueError("--protocol paper evaluates the test split every epoch and trains on the whole training "
                         "set: drop --val-fraction, or use --protocol val")
    if protocol == "val":
        kwargs.setdefault("val_fraction", DEFAULT_VAL_FRACTION)
    return kwargs


def parse_key_values(pairs) -> dict:
    """``KEY=VALUE`` strings (``--agent-arg``) -> the same kwargs a ``NAME:KEY=VALUE`` spec gives."""
    from patchenv.registry import parse_spec

    kwargs = {}
    for pair in pairs or ():
        kwargs.update(parse_spec(f"_:{pair}")[1])  # one pair at a time: a value may hold ':'
    return kwargs


def check_out(out: Path, marker: str, resume: bool, overwrite: bool) -> None:
    """Refuse to write into a folder that holds earlier results unless told what to do
    with them: results are never deleted silently."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; expected a folder (new or holding earlier results)")
    if (out / marker).exists() and not (out / marker).is_file():
        raise ValueError(f"{out / marker} is a folder; it should be this tool's results file: use another --out")
    if resume and overwrite:
        raise ValueError("--resume and --overwrite contradict each other: pick one")
    if (out / marker).exists() and not (resume or overwrite):
        raise ValueError(f"{out} already holds results ({marker}); pass --resume to continue, --overwrite to "
                         f"start over, or another --out")

"""A population's runs on disk: one file holding each run sealed in the single env's
checkpoint format (`patchenv.env.run_checkpoint.sealed`), plus which runs wait for their
autoreset. Reading checks every run (format, checksum, configuration) before anything
changes; `PopulationEnv.load_checkpoint` then restores them, bit for bit on the same
device type."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import torch

from patchenv.atomic import atomic_torch_save
from patchenv.env import run_checkpoint
from patchenv.env.run_setup import RunSetup

POPULATION_FORMAT = "patchenv-population-v1"


def save(path: Union[str, os.PathLike], sealed_runs: list, autoreset: list, train_time_s: float) -> None:
    """Write the sealed runs (`run_checkpoint.sealed`, in order) atomically."""
    atomic_torch_save({"format": POPULATION_FORMAT, "runs": sealed_runs, "autoreset": autoreset,
                       "train_time_s": train_time_s}, path)


def read(path: Union[str, os.PathLike], setup: RunSetup, num_envs: int) -> tuple[list[dict], list, float]:
    """(each run's checked state, autoreset flags, train_time_s) of the file at `path`.
    Raises a one-line ValueError naming the file (and the run); changes nothing."""
    path = Path(path)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError(f"cannot read population checkpoint {path}: {type(e).__name__}: {e}") from None
    if not isinstance(saved, dict) or saved.get("format") != POPULATION_FORMAT:
        raise ValueError(f"{path} is not a patchenv population checkpoint ({POPULATION_FORMAT})")
    runs = saved.get("runs")
    if not isinstance(runs, list) or len(runs) != num_envs:
        count = len(runs) if isinstance(runs, list) else "no"
        raise ValueError(f"{path} holds {count} runs; this population has num_envs={num_envs}")
    states = [run_checkpoint.unseal(setup, sealed, f"{path} (run {i})") for i, sealed in enumerate(runs)]
    return states, saved.get("autoreset", [False] * num_envs), float(saved.get("train_time_s", 0.0))

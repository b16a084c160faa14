"""A population's runs on disk: one file holding each run sealed in the single env's
checkpoint format (`patchenv.env.checkpoint.sealed`), plus which runs wait for their
autoreset. Loading checks every run (format, checksum, configuration) before any changes,
and continues bit for bit on the same device type."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import gymnasium as gym
import numpy as np
import torch

from patchenv.atomic import atomic_torch_save
from patchenv.env import checkpoint as run_checkpoint

POPULATION_FORMAT = "patchenv-population-v1"


def save(population, path: Union[str, os.PathLike]) -> None:
    if any(run.model is None for run in population.runs):
        raise gym.error.ResetNeeded("call reset() before save_checkpoint(): there are no training runs yet")
    atomic_torch_save({"format": POPULATION_FORMAT, "runs": [run_checkpoint.sealed(run) for run in population.runs],
                       "autoreset": population._autoreset.tolist(),
                       "train_time_s": population.train_time_s}, path)


def load(population, path: Union[str, os.PathLike]) -> None:
    path = Path(path)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError(f"cannot read population checkpoint {path}: {type(e).__name__}: {e}") from None
    if not isinstance(saved, dict) or saved.get("format") != POPULATION_FORMAT:
        raise ValueError(f"{path} is not a patchenv population checkpoint ({POPULATION_FORMAT})")
    runs = saved.get("runs")
    if not isinstance(runs, list) or len(runs) != population.num_envs:
        count = len(runs) if isinstance(runs, list) else "no"
        raise ValueError(f"{path} holds {count} runs; this population has num_envs={population.num_envs}")
    states = [run_checkpoint.unseal(run, sealed, f"{path} (run {i})")
              for i, (run, sealed) in enumerate(zip(population.runs, runs))]
    for i, (run, state) in enumerate(zip(population.runs, states)):
        run_checkpoint.restore(run, state, f"{path} (run {i})")
        population._adopt(i)
    population._autoreset = np.asarray(saved.get("autoreset", [False] * population.num_envs), dtype=bool)
    population.train_time_s = float(saved.get("train_time_s", 0.0))

"""A population's runs on disk: one file holding each run sealed in the single env's
checkpoint format (`patchenv.env.run_checkpoint.sealed`), plus which runs wait for their
autoreset. Reading checks every run (format, checksum, configuration) before anything
changes; `PopulationEnv.load_checkpoint` then restores them, bit for bit on the same
device type. Read without the free unpickler (`patchenv.safe_load`), as the single env's."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from patchenv import safe_load
from patchenv.atomic import atomic_torch_save
from patchenv.env import run_checkpoint
from patchenv.env.run_setup import RunSetup

# v2 holds v2 runs; a v1 file (runs read by unpickling) is continued only if trusted.
POPULATION_FORMAT = "patchenv-population-v2"
TRUSTED_ONLY_FORMATS = ("patchenv-population-v1",)


def save(path: Union[str, os.PathLike], sealed_runs: list, autoreset: list, train_time_s: float) -> None:
    """Write the sealed runs (`run_checkpoint.sealed`, in order) atomically."""
    atomic_torch_save({"format": POPULATION_FORMAT, "runs": sealed_runs, "autoreset": autoreset,
                       "train_time_s": train_time_s}, path)


def read(path: Union[str, os.PathLike], setup: RunSetup, num_envs: int,
         trust: bool = False) -> tuple[list[dict], list, float]:
    """(each run's checked state, autoreset flags, train_time_s) of the file at `path`.
    Raises a one-line ValueError naming the file (and the run); changes nothing. `trust`
    also reads a v1 file, whose runs need the free unpickler (`run_checkpoint.read`)."""
    path = Path(path)
    saved = safe_load.load(path, f"population checkpoint {path}")
    if isinstance(saved, dict) and saved.get("format") in TRUSTED_ONLY_FORMATS and not trust:
        raise safe_load.older_format(path, saved["format"])
    if not isinstance(saved, dict) or saved.get("format") not in (POPULATION_FORMAT, *TRUSTED_ONLY_FORMATS):
        raise ValueError(f"{path} is not a patchenv population checkpoint ({POPULATION_FORMAT})")
    runs = saved.get("runs")
    if not isinstance(runs, list) or len(runs) != num_envs:
        count = len(runs) if isinstance(runs, list) else "no"
        raise ValueError(f"{path} holds {count} runs; this population has num_envs={num_envs}")
    states = [run_checkpoint.unseal(setup, sealed, f"{path} (run {i})", trust) for i, sealed in enumerate(runs)]
    autoreset, train_time_s = saved.get("autoreset", [False] * num_envs), saved.get("train_time_s", 0.0)
    if not (isinstance(autoreset, list) and len(autoreset) == num_envs and all(isinstance(a, bool) for a in autoreset)):
        raise ValueError(f"population checkpoint {path} is damaged: 'autoreset' should be {num_envs} booleans")
    if not isinstance(train_time_s, (int, float)) or isinstance(train_time_s, bool):
        raise ValueError(f"population checkpoint {path} is damaged: 'train_time_s' should be a number")
    return states, autoreset, float(train_time_s)

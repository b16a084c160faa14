"""A run's resume points: ``out/checkpoints/step-<global step>/`` holding the env's run
(``env.pt``), the agent (``agent<save_suffix>``) and every global generator (``rng.pt``),
committed by ``out/progress.json``, which names the folder and holds the runner's state."""
from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from patchenv.atomic import atomic_torch_save, atomic_write_json
from patchenv.run.errors import RunError
from patchenv.run.records import RunState
from patchenv.selector import PatchSelector

FORMAT = "patchenv-run-v1"


def seed_everything(seed: int) -> None:
    """The global generators some agents draw from (SB3 samples from torch's); the env
    draws from its own."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # CUDA's generators too


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def has_checkpoint(out) -> bool:
    return (Path(out) / "progress.json").is_file()


def read_progress(out) -> dict:
    """progress.json of `out`, checked: it names an existing checkpoint folder of `out`,
    and holds a configuration and a runner state of the right shape."""
    path = Path(out) / "progress.json"
    if path.exists() and not path.is_file():
        raise RunError(f"{path} is a folder; it should be the run's progress file")
    if not path.is_file():
        raise RunError(f"nothing to resume in {out}: no progress.json")
    try:
        progress = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RunError(f"cannot read {path}: {e}") from None
    if not isinstance(progress, dict) or progress.get("format") != FORMAT:
        raise RunError(f"{path} is not a patchenv run ({FORMAT})")
    checkpoint = progress.get("checkpoint")
    # A checkpoint of this run's own checkpoints/ folder, never a path leading elsewhere.
    if not (isinstance(checkpoint, str) and checkpoint.startswith("checkpoints/")
            and Path(checkpoint).name not in ("", ".", "..") and "/" not in checkpoint[len("checkpoints/"):]):
        raise RunError(f"{path} is damaged: 'checkpoint' should be checkpoints/<folder>, got {checkpoint!r}")
    if not (Path(out) / checkpoint).is_dir():
        raise RunError(f"{path} names checkpoint {checkpoint!r}, which is missing")
    if not isinstance(progress.get("config"), dict):
        raise RunError(f"{path} is damaged: it holds no run configuration")
    try:
        state = RunState.from_dict(progress["state"])
        if not (isinstance(state.history, list) and all(isinstance(row, dict) for row in state.history)):
            raise TypeError("its history is not a list of records")
    except (KeyError, TypeError, ValueError) as e:
        raise RunError(f"{path} is damaged: its runner state cannot be read ({type(e).__name__}: {e})") from None
    return progress


def save_checkpoint(out: Path, env, agent: PatchSelector, state: RunState, config: dict) -> None:
    u = env.unwrapped
    root = out / "checkpoints"
    name = f"step-{u.global_step:09d}"
    n = 1
    while (root / name).exists():  # e.g. a Ctrl-C on an epoch's last step: never overwrite the good one
        name, n = f"step-{u.global_step:09d}.{n}", n + 1
    folder = root / name
    folder.mkdir(parents=True)
    u.save_checkpoint(folder / "env.pt")
    agent.save(folder / f"agent{agent.save_suffix}")
    atomic_torch_save(rng_state(), folder / "rng.pt")
    # The commit point: until progress.json names the new folder, the old one is the checkpoint.
    atomic_write_json(out / "progress.json", {"format": FORMAT, "checkpoint": f"checkpoints/{name}",
                                              "config": config, "state": asdict(state)})
    for old in root.iterdir():
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(out: Path, env, agent: PatchSelector) -> RunState:
    """Restore env, agent, RNGs and the runner's state; a damaged or mismatched checkpoint
    is a one-line RunError naming the folder."""
    progress = read_progress(out)
    folder = out / progress["checkpoint"]
    try:
        env.unwrapped.load_checkpoint(folder / "env.pt")
        agent.load(folder / f"agent{agent.save_suffix}")
        rngs = torch.load(folder / "rng.pt", weights_only=False)
        if not (isinstance(rngs, dict) and {"python", "numpy", "torch"} <= set(rngs)):
            raise ValueError(f"{folder / 'rng.pt'} holds no python, numpy and torch generator states")
        state = RunState.from_dict(progress["state"])
        set_rng_state(rngs)
    except Exception as e:  # unpickling a damaged file can raise almost anything
        raise RunError(f"cannot resume from {folder}: {type(e).__name__}: {e}") from None
    return state

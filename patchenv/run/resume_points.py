"""A run's resume points: ``out/checkpoints/step-<global step>/`` holding the env's run
(``env.pt``), the agent (``agent<save_suffix>``) and every global generator (``rng.pt``),
committed by ``out/progress.json``, which names the folder and holds the runner's state.
Every file of it is read without running code from it (`patchenv.safe_load`, JSON)."""
from __future__ import annotations

import random
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from patchenv import checked_json, safe_load
from patchenv.atomic import atomic_torch_save, writing
from patchenv.checks import one_line
from patchenv.run.errors import RunError
from patchenv.run.records import RunState
from patchenv.selector import PatchSelector

FORMAT = "patchenv-run-v1"
# rng.pt: every global generator's state as tensors and plain values (numpy's key as a
# tensor), read with weights_only=True. The file before it (no format) held numpy arrays.
RNG_FORMAT = "patchenv-rng-v2"


def seed_everything(seed: int) -> None:
    """The global generators some agents draw from (SB3 samples from torch's); the env
    draws from its own."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # CUDA's generators too


def rng_state() -> dict:
    """The global generators' states (Python's, numpy's legacy one, torch's and CUDA's), as
    tensors and plain values."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"] = {"key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                            "pos": int(numpy_state["state"]["pos"])}
    state = {"format": RNG_FORMAT, "python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Make `state` (`rng_state`, or the older layout with numpy's own tuple) the global
    generators'. Raises (TypeError, ValueError, KeyError) on a state that does not fit."""
    numpy_state = state["numpy"]
    if isinstance(numpy_state, dict):  # ours: the key back to numpy's uint32 array
        key = numpy_state["state"]["key"]
        if not (isinstance(key, torch.Tensor) and key.shape == (624,) and key.dtype == torch.int64):
            raise ValueError("numpy's generator key should be 624 integers")
        numpy_state = {**numpy_state, "state": {**numpy_state["state"], "key": key.numpy().astype(np.uint32)}}
    python_state = state["python"]
    if isinstance(python_state, list):  # a tuple, if the file came through a list-only writer
        python_state = (python_state[0], tuple(python_state[1]), python_state[2])
    np.random.set_state(numpy_state)
    random.setstate(python_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def has_checkpoint(out) -> bool:
    return (Path(out) / "progress.json").is_file()


def read_progress(out, trust: bool = False) -> dict:
    """progress.json of `out`, checked: its checksum (`patchenv.checked_json`; one without
    is read only if `trust`), it names an existing checkpoint folder of `out`, and holds a
    configuration and a runner state of the right shape."""
    path = Path(out) / "progress.json"
    if path.exists() and not path.is_file():
        raise RunError(f"{path} is a folder; it should be the run's progress file")
    if not path.is_file():
        raise RunError(f"nothing to resume in {out}: no progress.json")
    try:
        progress = checked_json.read(path, trust=trust)
    except ValueError as e:
        raise RunError(str(e)) from None
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
    try:
        with writing(folder):
            folder.mkdir(parents=True)
        u.save_checkpoint(folder / "env.pt")
        agent_file = folder / f"agent{agent.save_suffix}"
        with writing(agent_file):  # a plug-in's save may write without patchenv.atomic
            agent.save(agent_file)
        atomic_torch_save(rng_state(), folder / "rng.pt")
        # The commit point: until progress.json names the new folder, the old one is the checkpoint.
        checked_json.write(out / "progress.json", {"format": FORMAT, "checkpoint": f"checkpoints/{name}",
                                                  "config": config, "state": asdict(state)})
    except Exception:
        # A write that failed (a full disk, a read-only folder) leaves no half-made folder beside
        # the committed one; progress.json still names that one.
        shutil.rmtree(folder, ignore_errors=True)
        raise
    for old in root.iterdir():
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(out: Path, env, agent: PatchSelector, trust_checkpoint: bool = False) -> RunState:
    """Restore env, agent, RNGs and the runner's state; a damaged or mismatched checkpoint
    is a one-line RunError naming the folder. No file is unpickled freely unless
    `trust_checkpoint` (for a folder an older patchenv wrote, that the user trusts)."""
    progress = read_progress(out, trust_checkpoint)
    folder = out / progress["checkpoint"]
    try:
        rngs = safe_load.load(folder / "rng.pt", folder / "rng.pt", trust=trust_checkpoint)
        if not (isinstance(rngs, dict) and {"python", "numpy", "torch"} <= set(rngs)):
            raise ValueError(f"{folder / 'rng.pt'} holds no python, numpy and torch generator states")
        if rngs.get("format") != RNG_FORMAT and not trust_checkpoint:
            raise ValueError(f"{folder / 'rng.pt'} is from an older patchenv; {safe_load.TRUST_HINT}")
        safe_load.load_trusting(env.unwrapped.load_checkpoint, folder / "env.pt", trust_checkpoint)
        safe_load.load_trusting(agent.load, folder / f"agent{agent.save_suffix}", trust_checkpoint)
        state = RunState.from_dict(progress["state"])
        set_rng_state(rngs)
    except Exception as e:  # a damaged file can raise almost anything on its way in
        raise RunError(f"cannot resume from {folder}: {type(e).__name__}: {one_line(e)}") from None
    return state

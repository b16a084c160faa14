"""A training run on disk (`TrainingRun`, and what its env keeps of the episode): the
file of ``save_checkpoint`` / ``load_checkpoint``.

One file holds the ViT, the optimiser, every generator, the data order and position, the
pending batch, the reward reference and the counters, with a SHA-256 of its contents, so a
run continues bit for bit (same device type) and a damaged file is refused, not loaded.
The file holds tensors and plain values only and is read without the free unpickler
(`patchenv.safe_load`): a crafted file cannot run code.
"""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any, Union

import gymnasium as gym
import numpy as np
import torch

from patchenv import safe_load
from patchenv.checks import one_line
from patchenv.atomic import atomic_torch_save
from patchenv.env.run_setup import RunSetup
from patchenv.env.training_run import TrainingRun

# v2: tensors and plain values only, read with torch.load(weights_only=True).
# v1 holds the same run, but was read by unpickling: continued only if the user trusts it.
# v1 and v2 have the notebook's ViT head (LayerNorm after pooling; no final LayerNorm in
# the transformer). A v0 run's weights belong to the other architecture: refused, not loaded.
CHECKPOINT_FORMAT = "patchenv-checkpoint-v2"
TRUSTED_ONLY_FORMATS = ("patchenv-checkpoint-v1",)
_OLD_CHECKPOINT_FORMATS = {
    "patchenv-checkpoint-v0": "its ViT has the newer vit-pytorch head (a LayerNorm on every token before pooling), "
                              "not the notebook's (LayerNorm after pooling) that this patchenv trains",
}


def save(run: TrainingRun, shell: dict, path: Union[str, os.PathLike]) -> None:
    """Save the whole training run (ViT, optimiser, every RNG, data order and position,
    pending batch, reward reference, counters) and the `shell`'s state (`sealed`).
    Written atomically: temp file + rename."""
    atomic_torch_save(sealed(run, shell), path)


def sealed(run: TrainingRun, shell: dict) -> dict:
    """The run as the file `save` writes holds it: the state, serialised, with its checksum.
    `shell`: what the env around the run keeps of its episode (``np_random``, its
    ``np_random_seed`` and ``episode_over``)."""
    if run.model is None:
        raise gym.error.ResetNeeded("call reset() before save_checkpoint(): there is no training run yet")
    state = {"format": CHECKPOINT_FORMAT, "config": run.setup.fingerprint(), **run.checkpoint_state(),
             "np_random": shell["np_random"], "np_random_seed": shell["np_random_seed"],
             "episode_over": shell["episode_over"]}
    state["model"], state["optimizer"] = _owned(state["model"]), _owned(state["optimizer"])
    safe_load.check_plain(state, "checkpoint")  # what weights_only=True reads back, and nothing else
    payload = io.BytesIO()
    torch.save(state, payload)
    payload = payload.getvalue()
    # The checksum covers the whole run: a file damaged on disk is refused, not loaded.
    return {"format": CHECKPOINT_FORMAT, "sha256": hashlib.sha256(payload).hexdigest(), "payload": payload}


def _owned(obj):
    """`obj` with every tensor copied into storage of its own. torch.save writes a view's
    whole storage: a population's run (`patchenv.population`) views rows of tensors
    holding every run, and its checkpoint must hold that run alone."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _owned(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_owned(v) for v in obj]
    return obj


def read(setup: RunSetup, path: Union[str, os.PathLike], trust: bool = False) -> dict:
    """The state in the checkpoint file `path`, checked (`unseal`); changes nothing. The
    file is read without running code from it; `trust` also reads the format (v1) that
    needs the free unpickler, for a file the user wrote."""
    path = Path(path)
    wrapper = safe_load.load(path, f"checkpoint {path}")
    return unseal(setup, wrapper, path, trust)


def unseal(setup: RunSetup, wrapper: Any, path, trust: bool = False) -> dict:
    """The state in a sealed run (`sealed`), checked: format, checksum, and the
    configuration of `setup`. Raises a one-line ValueError naming `path`; changes nothing.
    A v1 run is read only if `trust` (its payload goes through the free unpickler)."""
    if isinstance(wrapper, dict) and wrapper.get("format") in TRUSTED_ONLY_FORMATS and not trust:
        raise safe_load.older_format(path, wrapper["format"])
    if isinstance(wrapper, dict) and wrapper.get("format") in _OLD_CHECKPOINT_FORMATS:
        raise ValueError(f"{path} is a {wrapper['format']} checkpoint: "
                         f"{_OLD_CHECKPOINT_FORMATS[wrapper['format']]}; start a new run")
    if not isinstance(wrapper, dict) or wrapper.get("format") not in (CHECKPOINT_FORMAT, *TRUSTED_ONLY_FORMATS) \
            or not isinstance(wrapper.get("payload"), bytes):
        raise ValueError(f"{path} is not a patchenv checkpoint ({CHECKPOINT_FORMAT})")
    if hashlib.sha256(wrapper["payload"]).hexdigest() != wrapper.get("sha256"):
        raise ValueError(f"checkpoint {path} is damaged: its contents do not match their checksum")
    state = safe_load.load(wrapper["payload"], f"checkpoint {path}", map_location=setup.device, trust=trust)
    saved, ours = state.get("config") if isinstance(state, dict) else None, setup.fingerprint()
    if not isinstance(saved, dict):
        raise ValueError(f"checkpoint {path} is damaged: it holds no env configuration")
    if saved != ours:
        diff = ", ".join(f"{k} {saved.get(k)!r} (saved) != {ours.get(k)!r}"
                         for k in sorted(saved.keys() | ours.keys()) if saved.get(k) != ours.get(k))
        raise ValueError(f"checkpoint {path} was saved by an env with another configuration: {diff}")
    return state


def restore(run: TrainingRun, state: dict, path) -> dict:
    """Make `state` (from `unseal`) the run (`TrainingRun.load_checkpoint_state`); returns
    the shell's part (``np_random`` as a Generator, ``np_random_seed``, ``episode_over``).
    A state that does not fit raises a one-line ValueError naming `path`, the run unchanged."""
    try:
        np_random = np.random.Generator(np.random.PCG64())
        np_random.bit_generator.state = state["np_random"]
        missing = {"np_random_seed", "episode_over"} - set(state)
        if missing:
            raise KeyError(f"missing {sorted(missing)}")
        run.load_checkpoint_state(state)
    except Exception as e:
        raise ValueError(f"cannot restore checkpoint {path}: {type(e).__name__}: {one_line(e)}") from None
    return {"np_random": np_random, "np_random_seed": state["np_random_seed"], "episode_over": state["episode_over"]}

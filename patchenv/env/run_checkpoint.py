"""A training run on disk (`TrainingRun`, and what its env keeps of the episode): the
file of ``save_checkpoint`` / ``load_checkpoint``.

One file holds the ViT, the optimiser, every generator, the data order and position, the
pending batch, the reward reference and the counters, with a SHA-256 of its contents, so a
run continues bit for bit (same device type) and a damaged file is refused, not loaded.
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

from patchenv.atomic import atomic_torch_save
from patchenv.env.progress import ProgressTracker
from patchenv.env.run_setup import RunSetup
from patchenv.env.training_run import TrainingRun

# v1: the notebook's ViT head (LayerNorm after pooling; no final LayerNorm in the
# transformer). A v0 run's weights belong to the other architecture: refused, not loaded.
CHECKPOINT_FORMAT = "patchenv-checkpoint-v1"
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
    state = {
        "format": CHECKPOINT_FORMAT,
        "config": run.setup.fingerprint(),
        "model": _owned(run.model.state_dict()),
        "optimizer": _owned(run.optimizer.state_dict()),
        "np_random": shell["np_random"],
        "np_random_seed": shell["np_random_seed"],
        "data_gen": run.data_gen.get_state(),
        "perm": run.perm,
        "pos": run.pos,
        "epoch": run.epoch,
        "global_step": run.global_step,
        "episode_step": run.episode_step,
        "episode_over": shell["episode_over"],
        "loss_ref": run.loss_ref,
        "batch_x": run.batch_x,
        "batch_y": run.batch_y,
        "train_time_s": run.train_time_s,
        "progress": run.progress.state_dict(),
        "pending_probe_flops": run.pending_probe_flops,
    }
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


def read(setup: RunSetup, path: Union[str, os.PathLike]) -> dict:
    """The state in the checkpoint file `path`, checked (`unseal`); changes nothing."""
    path = Path(path)
    try:
        wrapper = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from None
    return unseal(setup, wrapper, path)


def unseal(setup: RunSetup, wrapper: Any, path) -> dict:
    """The state in a sealed run (`sealed`), checked: format, checksum, and the
    configuration of `setup`. Raises a one-line ValueError naming `path`; changes nothing."""
    if isinstance(wrapper, dict) and wrapper.get("format") in _OLD_CHECKPOINT_FORMATS:
        raise ValueError(f"{path} is a {wrapper['format']} checkpoint: "
                         f"{_OLD_CHECKPOINT_FORMATS[wrapper['format']]}; start a new run")
    if not isinstance(wrapper, dict) or wrapper.get("format") != CHECKPOINT_FORMAT \
            or not isinstance(wrapper.get("payload"), bytes):
        raise ValueError(f"{path} is not a patchenv checkpoint ({CHECKPOINT_FORMAT})")
    if hashlib.sha256(wrapper["payload"]).hexdigest() != wrapper.get("sha256"):
        raise ValueError(f"checkpoint {path} is damaged: its contents do not match their checksum")
    try:
        state = torch.load(io.BytesIO(wrapper["payload"]), map_location=setup.device, weights_only=False)
        saved, ours = state["config"], setup.fingerprint()
    except Exception as e:
        raise ValueError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from None
    if saved != ours:
        diff = ", ".join(f"{k} {saved.get(k)!r} (saved) != {ours.get(k)!r}"
                         for k in sorted(saved.keys() | ours.keys()) if saved.get(k) != ours.get(k))
        raise ValueError(f"checkpoint {path} was saved by an env with another configuration: {diff}")
    return state


def restore(run: TrainingRun, state: dict, path) -> dict:
    """Make `state` (from `unseal`) the run; returns the shell's part (``np_random`` as a
    Generator, ``np_random_seed``, ``episode_over``). The run's pending observation is made."""
    # Everything is read into new objects first: a file that fails here leaves the
    # running run as it was.
    parts = run.parts(model_seed=None)
    progress = ProgressTracker(run.setup.num_patches)
    try:
        parts["model"].load_state_dict(state["model"])
        # Checkpoints from before the progress statistics existed have none: a fresh
        # tracker (their envs neither observed nor rewarded progress).
        if "progress" in state:
            progress.load_state_dict(state["progress"])
        parts["optimizer"].load_state_dict(state["optimizer"])
        np_random = np.random.Generator(np.random.PCG64())
        np_random.bit_generator.state = state["np_random"]
        missing = {"np_random_seed", "data_gen", "perm", "pos", "epoch", "global_step", "episode_step",
                   "episode_over", "loss_ref", "batch_x", "batch_y", "train_time_s"} - set(state)
        if missing:
            raise KeyError(f"missing {sorted(missing)}")
    except Exception as e:
        raise ValueError(f"cannot restore checkpoint {path}: {type(e).__name__}: {e}") from None
    device = run.setup.device
    run.use_parts(parts)
    _restore_data_gen(run.data_gen, state["data_gen"].cpu())  # generator states are CPU byte tensors
    run.perm = state["perm"].to(device)
    run.pos = state["pos"]
    run.epoch = state["epoch"]
    run.global_step = state["global_step"]
    run.episode_step = state["episode_step"]
    run.loss_ref = state["loss_ref"]
    run.set_batch(state["batch_x"].to(device), state["batch_y"].to(device))
    run.train_time_s = state["train_time_s"]
    run.progress = progress
    run.pending_probe_flops = state.get("pending_probe_flops", 0)
    run.credit = None
    run.prepare_observation()
    return {"np_random": np_random, "np_random_seed": state["np_random_seed"], "episode_over": state["episode_over"]}


def _restore_data_gen(generator: torch.Generator, saved: torch.Tensor) -> None:
    """The data order's generator from a checkpoint. CPU and CUDA generators keep
    different states (5056 vs 16 bytes), so a run moved to the other device type is
    reseeded from a hash of the saved state: deterministic, and the pending batch is
    the saved one, but later epochs' order and crops differ from the original
    device's. On the same device type the run continues exactly."""
    try:
        generator.set_state(saved)
    except RuntimeError:
        digest = hashlib.sha256(saved.numpy().tobytes()).digest()
        generator.manual_seed(int.from_bytes(digest[:8], "little") >> 1)

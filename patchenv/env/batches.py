"""The env's training data and what the agent observes of it: the data order (one
``torch.randperm`` per epoch on the device), the pending batch (augmented and normalised
on the device), its patch embedding and the observation built from it, and the held-out
probe of the progress observation and reward."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from patchenv.arrays import to_numpy
from patchenv.data import augment, normalize, to_unit
from patchenv.model.training import autocast


def new_epoch_order(env) -> None:
    env._perm = torch.randperm(len(env.data.train_y), device=env.device, generator=env._data_gen)
    env._pos = 0


def advance(env) -> None:
    """Move to the next batch (the next epoch's first, after the last) and load it."""
    next_position(env)
    load_batch(env)


def next_position(env) -> None:
    """The data position of the next batch: the next epoch's first (and its new order)
    after the last. A population moves each run so, then loads their batches at once."""
    env._pos += 1
    if env._pos >= env.steps_per_epoch:
        env.epoch += 1
        new_epoch_order(env)


def batch_indices(env) -> torch.Tensor:
    """The training images of the pending batch, (B,) indices on the device."""
    return env._perm[env._pos * env.batch_size:(env._pos + 1) * env.batch_size]


def load_batch(env) -> None:
    idx = batch_indices(env)
    x = to_unit(augment(env.data.train_x[idx], env._data_gen))  # crop the uint8 images: fewer bytes
    env._batch_x = normalize(x, env._mean, env._std)
    env._batch_y = env.data.train_y[idx]
    prepare_observation(env)


def prepare_observation(env) -> None:
    # The embedding keeps its autograd graph: the eager training step on this batch
    # reuses it. A CUDA-graph step embeds inside its graph, so it needs none. An
    # observation that does not read it (progress) is made without it: the training step
    # then embeds the kept patches only.
    if not env.model.training:
        env.model.train()
    if env._embeds_kept_only:
        env._tokens = None
    else:
        with autocast(env.device, env.amp), torch.set_grad_enabled(env._graphed is None):
            env._tokens = env.model.embed(env._batch_x)  # (B, N, D)
    env._obs = make_obs(env, env._tokens)


@torch.no_grad()
def make_obs(env, tokens: Optional[torch.Tensor], for_agent: bool = False):
    """The observation of `tokens` (a batch's embedding) as a device tensor; ``for_agent``:
    in the form the agent gets (numpy unless ``tensor_obs``)."""
    if env.obs_type == "progress":  # the run's statistics; the batch's tokens do not enter
        obs = torch.from_numpy(progress_vector(env)).to(env.device)
    else:
        tokens = tokens.detach()
        if env.obs_type == "embeddings":
            obs = tokens
        elif env.obs_type == "pooled":
            obs = tokens.mean(dim=0)
        else:
            with autocast(env.device, env.amp):
                obs = env.model.attention_state(tokens)
        obs = obs.float()
    return agent_view(env, obs) if for_agent else obs


def progress_vector(env) -> np.ndarray:
    """The progress observation (`patchenv.env.progress`) of the run now, on the host."""
    budget_done = (env.global_step / env.total_steps if env.total_steps is not None
                   else env._episode_step / env.episode_steps)
    return env._progress.observation(budget_done, env._pos / env.steps_per_epoch)


def agent_view(env, obs: torch.Tensor):
    """An observation as the agent gets it: the device tensor with ``tensor_obs``, else numpy
    (note: a device-to-host copy, the Gymnasium boundary)."""
    return obs if env.tensor_obs else to_numpy(obs)


def probe_data(env, probe_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The probe: a fixed batch of the validation split (the training set's when there is
    none), unaugmented and normalised once."""
    px, py = env._val if env._val is not None else (env.data.train_x, env.data.train_y)
    px, py = px[:probe_size], py[:probe_size]
    return normalize(to_unit(px), env._mean, env._std), py


@torch.no_grad()
def run_probe(env) -> float:
    """Evaluate the probe with every patch; record it; returns the progress reward of the
    interval it closes."""
    x, y = env._probe
    model = env.model
    was_training = model.training
    model.eval()
    with autocast(env.device, env.amp):
        logits = model(x)
    model.train(was_training)
    loss, acc = torch.stack([F.cross_entropy(logits.float(), y),
                             (logits.argmax(-1) == y).float().mean()]).tolist()  # note: one sync
    return env._progress.after_probe(loss, acc, env._probe_flops)

"""One training step of the env, `train_once`: the ViT trains on the pending batch with
the kept patches, the reward is computed, the next batch and its observation are made.
``env.step`` validates the action, then runs this once, or ``action_repeat`` times."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from patchenv.env import render as render_mod
from patchenv.env.batches import advance, run_probe
from patchenv.env.rewards import StepStats, checked_reward, loss_term, patch_term
from patchenv.model.keep import Keep
from patchenv.model.training import StepResult, train_step


def train_once(env, keep: Keep) -> tuple:
    """One training step keeping `keep`: Gymnasium's (obs, reward, terminated, truncated,
    info), the reward a float."""
    # No sync here: the previous step ended with one, and a torch mask was synchronised
    # by parse_action (its length decides the sequence length).
    t0 = time.perf_counter()
    # The observation's embedding, reused when it has its autograd graph. There is none
    # with CUDA graphs (the graph embeds), nor when the observation does not read it
    # (obs_type="progress"): then the step embeds only the kept patches.
    tokens = env._tokens if env._tokens is not None and env._tokens.requires_grad else None
    result = train_step(env.model, env.optimizer, env._batch_x, env._batch_y, keep.index, env.amp,
                        tokens=tokens, forward_tokens=env._forward_tokens if env.compile else None,
                        graphed=env._graphed)
    done = record_update(env, keep, result)
    advance(env)  # load batch t+1 and its observation with the updated weights
    try:
        return finish_step(env, keep, done)
    finally:  # a failing reward_fn raises here, and the step it follows is applied and timed
        if env.tensor_obs and env.device.type == "cuda":
            torch.cuda.synchronize(env.device)  # note: sync so the clock reads finished work
        env.last_step_time_s = time.perf_counter() - t0
        env.train_time_s += env.last_step_time_s


@dataclass
class Update:
    """What `record_update` learnt of a training step, for `finish_step`."""

    result: StepResult
    flops: int  # training FLOPs of the step
    probe_flops: int  # the probe's forward FLOPs charged to this step
    progress_reward: float
    trained_epoch: int


def record_update(env, keep: Keep, result: StepResult) -> Update:
    """The run's bookkeeping after an update, before the next batch is loaded: counters,
    the reward's reference loss, the progress statistics and (every probe_every steps)
    the probe, with the updated weights. A population (`patchenv.population`) calls this
    for each of its runs after its one batched update."""
    if result.token_grad is not None:
        env._credit = (result.token_grad, result.token_keep)
    env.last_keep = keep
    # The transformer ran on (B, largest count kept): select_tokens pads uneven per-image
    # masks to the batch's largest count and needs no padding otherwise.
    flops = env._train_flops(keep.longest)
    trained_epoch = env.epoch
    env.global_step += 1
    env._episode_step += 1
    if env._loss_ref is None and not result.diverged and env.global_step >= env.loss_ref_step:
        env._loss_ref = result.loss
    # Progress statistics and, every probe_every steps, the probe (with the updated
    # weights, before the next batch's observation is made from them).
    env._progress.after_step(result.loss, keep.kept, flops + env._pending_probe_flops,
                              env._train_flops(env.num_patches) + env._pending_probe_flops)
    probe_flops, env._pending_probe_flops = env._pending_probe_flops, 0
    progress_reward = 0.0
    if env._uses_probe and not result.diverged and env.global_step % env.config.probe_every == 0:
        progress_reward = run_probe(env)
        probe_flops += env._probe_flops
    if env.render_mode is not None:
        env._rendered = render_mod.remember(env._batch_x, keep)
    return Update(result, flops, probe_flops, progress_reward, trained_epoch)


def finish_step(env, keep: Keep, done: Update, obs=None, finite: Optional[bool] = None) -> tuple:
    """The step's result once the next batch and its observation are ready: the
    observation checked, the episode's end, the reward and the info. A population passes
    the run's `obs` (as the agent gets it) and whether it is `finite`, found for all its
    runs at once."""
    loss_v, acc_v, diverged = done.result.loss, done.result.accuracy, done.result.diverged
    kept = keep.kept
    if obs is None:
        obs = env._observation()  # numpy: the device-to-host copy waits for the GPU
    if finite is None:
        finite = bool(torch.isfinite(obs).all()) if env.tensor_obs else bool(np.isfinite(obs).all())
    if not diverged and not finite:
        # A finite update can still leave weights that overflow (a huge lr): the next
        # observation is not finite and the run cannot go on. End the episode and hand
        # out zeros so the observation stays in its space. (numpy: no extra sync.)
        diverged = True
        env._obs = torch.zeros_like(env._obs)
        obs = env._observation()

    # Until L(ref) is set (steps before loss_ref_step) a step is its own reference.
    loss_ref = env._loss_ref if env._loss_ref is not None else loss_v
    lt = loss_term(loss_v, loss_ref)
    pt = patch_term(kept, env.num_patches, env.n_patch_desired)
    stats = StepStats(loss=loss_v, loss_ref=loss_ref,
                      accuracy=acc_v, kept=kept,
                      kept_per_image=keep.per_image if env.selection == "image" else None,
                      num_patches=env.num_patches, n_patch_desired=env.n_patch_desired,
                      loss_term=lt, patch_term=pt)
    terminated = diverged
    truncated = (not terminated) and env._episode_step >= env.episode_steps
    env._episode_over = terminated or truncated  # settled before a reward_fn can fail
    if env.reward_fn is not None:
        reward = checked_reward(env.reward_fn, stats, diverged, env.global_step)
    elif env.reward_kind == "progress":
        reward = done.progress_reward
    else:
        reward = env.loss_weight * lt + env.patch_weight * pt
    info = {"loss": loss_v, "accuracy": acc_v, "kept": kept, "tokens": keep.tokens, "padding_tokens": keep.padding,
            "epoch": done.trained_epoch, "global_step": env.global_step, "loss_term": lt, "patch_term": pt,
            "diverged": diverged, "flops": done.flops + done.probe_flops, "probe_flops": done.probe_flops}
    if env.selection == "image":
        info["kept_per_image"] = keep.per_image.copy()
    return obs, float(reward), terminated, truncated, info


# What an env.step of several training steps (action_repeat) sums over them.
REPEAT_SUMS = ("tokens", "padding_tokens", "flops", "probe_flops")

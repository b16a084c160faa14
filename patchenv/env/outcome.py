"""What training steps mean to the agent: whether each episode ends, the rewards and the
info, computed in one piece for E runs (arrays with a leading E dimension, as Gymnasium's
vector envs keep their state). The single env is E = 1; a population passes all its
training runs at once, so these rules are written once and cost no Python per run (a
user's ``reward_fn``, called once per run, aside)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from patchenv.env.rewards import RewardFn, StepStats, checked_reward
from patchenv.env.counters import RunCounters
from patchenv.env.training_run import Update
from patchenv.model.keep import Keep

# What an env.step of several training steps (action_repeat) sums over them.
REPEAT_SUMS = ("tokens", "padding_tokens", "flops", "probe_flops")


@dataclass
class Steps:
    """E runs' training steps, as arrays (E,): what each update measured, the run's
    counters after it, and whether it diverged (a non-finite update, or an observation
    after it that is not finite)."""

    loss: np.ndarray
    accuracy: np.ndarray
    diverged: np.ndarray
    kept: np.ndarray  # mean patches kept per image
    tokens: np.ndarray
    padding: np.ndarray
    kept_per_image: Optional[np.ndarray]  # (E, B) with per-image masks, else None
    epoch: np.ndarray  # the epoch the step trained in
    global_step: np.ndarray
    episode_step: np.ndarray
    loss_ref: np.ndarray  # L(ref); the step's own loss until the run has one
    flops: np.ndarray  # training FLOPs plus the probe's charged to the step
    probe_flops: np.ndarray
    progress_reward: np.ndarray

    @classmethod
    def of(cls, counters: RunCounters, rows: np.ndarray, keeps: Sequence[Keep], updates: Sequence[Update],
           diverged: np.ndarray, per_image: bool) -> "Steps":
        """The steps of the runs at `rows` of `counters` (after they counted them), with
        their `keeps` and `updates`."""
        loss = np.array([u.result.loss for u in updates], dtype=np.float64)
        # Until L(ref) is set (steps before loss_ref_step) a step is its own reference.
        loss_ref = counters.loss_ref[rows]
        loss_ref = np.where(np.isnan(loss_ref), loss, loss_ref)
        probe_flops = np.array([u.probe_flops for u in updates], dtype=np.int64)
        return cls(loss=loss, accuracy=np.array([u.result.accuracy for u in updates], dtype=np.float64),
                   diverged=np.asarray(diverged, dtype=bool),
                   kept=np.array([k.kept for k in keeps], dtype=np.float64),
                   tokens=np.array([k.tokens for k in keeps], dtype=np.int64),
                   padding=np.array([k.padding for k in keeps], dtype=np.int64),
                   kept_per_image=np.stack([k.per_image for k in keeps]) if per_image else None,
                   epoch=np.array([u.trained_epoch for u in updates], dtype=np.int64),
                   global_step=counters.global_step[rows].copy(), episode_step=counters.episode_step[rows].copy(),
                   loss_ref=loss_ref, flops=np.array([u.flops for u in updates], dtype=np.int64) + probe_flops,
                   probe_flops=probe_flops,
                   progress_reward=np.array([u.progress_reward for u in updates], dtype=np.float64))


def loss_terms(s: Steps) -> np.ndarray:
    """L(ref) / L(t); 0 where the loss is not finite (a diverged step's reward stays finite)."""
    ok = np.isfinite(s.loss) & (s.loss > 0)
    return np.where(ok, s.loss_ref / np.where(ok, s.loss, 1.0), 0.0)


def patch_terms(s: Steps, num_patches: int, n_patch_desired: int) -> np.ndarray:
    """-|z - z*| / z* with z = N - kept dropped patches, z* = N - n_patch_desired."""
    z_star = num_patches - n_patch_desired
    return -np.abs((num_patches - s.kept) - z_star) / z_star


def episode_ends(s: Steps, episode_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(terminated, truncated): a diverged run terminates; an episode's last step truncates."""
    return s.diverged.copy(), ~s.diverged & (s.episode_step >= episode_steps)


def rewards(s: Steps, lt: np.ndarray, pt: np.ndarray, *, kind: str, weights: tuple[float, float],
            num_patches: int, n_patch_desired: int, reward_fn: Optional[RewardFn] = None) -> np.ndarray:
    """Each step's reward (E,): `reward_fn`'s (checked; it raises after the steps were
    applied), the progress reward (``kind="progress"``), or the paper's
    ``loss_weight * L(ref) / L(t) + patch_weight * patch_term``, `weights` = (loss_weight,
    patch_weight), from `lt` = `loss_terms` and `pt` = `patch_terms`."""
    if reward_fn is not None:
        return np.array([checked_reward(reward_fn, StepStats(
            loss=float(s.loss[i]), loss_ref=float(s.loss_ref[i]), accuracy=float(s.accuracy[i]),
            kept=float(s.kept[i]), kept_per_image=None if s.kept_per_image is None else s.kept_per_image[i],
            num_patches=num_patches, n_patch_desired=n_patch_desired, loss_term=float(lt[i]),
            patch_term=float(pt[i])), bool(s.diverged[i]), int(s.global_step[i])) for i in range(len(s.loss))])
    if kind == "progress":
        return s.progress_reward.copy()
    loss_weight, patch_weight = weights
    return loss_weight * lt + patch_weight * pt


def rewards_and_infos(s: Steps, *, num_patches: int, n_patch_desired: int, kind: str,
                      weights: tuple[float, float], reward_fn: Optional[RewardFn] = None) -> tuple[np.ndarray, dict]:
    """Each step's reward (`rewards`) and the info's numbers (`infos`), from one computation
    of the loss and patch terms. A failing `reward_fn` raises (the steps were applied)."""
    lt, pt = loss_terms(s), patch_terms(s, num_patches, n_patch_desired)
    return (rewards(s, lt, pt, kind=kind, weights=weights, num_patches=num_patches, n_patch_desired=n_patch_desired,
                    reward_fn=reward_fn), infos(s, lt, pt))


def row_info(infos: dict, i: int) -> dict:
    """Run i's info as its single env gives it (Python numbers, arrays copied) from an info
    of arrays (E, ...); a key whose ``_key`` mask (Gymnasium's vector info) leaves run i
    out is left out."""
    return {key: (value[i].item() if value[i].ndim == 0 else value[i].copy())
            for key, value in infos.items() if not key.startswith("_") and (f"_{key}" not in infos or infos[f"_{key}"][i])}


def infos(s: Steps, lt: np.ndarray, pt: np.ndarray) -> dict[str, np.ndarray]:
    """The info's numbers (the env's docstring lists them), each an array (E,)
    (``kept_per_image``: (E, B), with per-image masks)."""
    info = {"loss": s.loss, "accuracy": s.accuracy, "kept": s.kept, "tokens": s.tokens, "padding_tokens": s.padding,
            "epoch": s.epoch, "global_step": s.global_step, "loss_term": lt, "patch_term": pt,
            "diverged": s.diverged, "flops": s.flops, "probe_flops": s.probe_flops}
    if s.kept_per_image is not None:
        info["kept_per_image"] = s.kept_per_image
    return info

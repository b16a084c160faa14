"""What training steps mean to the agent: whether each episode ends, the rewards and the
info, computed in one piece for E runs (arrays with a leading E dimension, as Gymnasium's
vector envs keep their state). The single env is E = 1; a population passes all its
training runs at once, so these rules are written once and cost no Python per run (a
user's ``reward_fn``, called once per run, aside).

What the device measured (losses, accuracies, divergence, L(ref)) stays on the device:
the loss term, the reward, ``terminated`` and ``truncated`` are computed there, so a step
waits for nothing. What the host knows already (patches kept, tokens, counters, FLOPs)
stays on the host. `Outcome.on_host` brings the device's part to the host in one trip (the
numpy path, ``tensor_obs=False``); with ``tensor_obs=True`` it stays there (0-d tensors in
a single run's info, `row_info`)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence, Union

import numpy as np
import torch

from patchenv.arrays import rows_of, set_rows, to_device, to_numpy_all
from patchenv.env.rewards import RewardFn, StepStats, checked_reward
from patchenv.env.counters import RunCounters
from patchenv.env.training_run import Update
from patchenv.model.keep import Keep

# What an env.step of several training steps (action_repeat) sums over them.
REPEAT_SUMS = ("tokens", "padding_tokens", "flops", "probe_flops")

Values = Union[np.ndarray, torch.Tensor]


@dataclass
class Steps:
    """E runs' training steps, as arrays (E,): what each update measured (float64 and
    bool tensors on the device), the run's counters after it, and whether it diverged (a
    non-finite update, or an observation after it that is not finite; on the device)."""

    loss: torch.Tensor
    accuracy: torch.Tensor
    diverged: torch.Tensor
    kept: np.ndarray  # mean patches kept per image
    tokens: np.ndarray
    padding: np.ndarray
    kept_per_image: Optional[np.ndarray]  # (E, B) with per-image masks, else None
    epoch: np.ndarray  # the epoch the step trained in
    global_step: np.ndarray
    episode_step: np.ndarray
    loss_ref: torch.Tensor  # L(ref); the step's own loss until the run has one
    flops: np.ndarray  # training FLOPs plus the probe's charged to the step
    probe_flops: np.ndarray
    progress_reward: torch.Tensor

    @classmethod
    def of(cls, counters: RunCounters, rows: np.ndarray, keeps: Sequence[Keep], updates: Sequence[Update],
           diverged: torch.Tensor, per_image: bool) -> "Steps":
        """The steps of the runs at `rows` of `counters` (after they counted them), with
        their `keeps` and `updates`."""
        loss = torch.stack([u.result.loss for u in updates]).double()
        # Until L(ref) is set (steps before loss_ref_step) a step is its own reference.
        loss_ref = counters.loss_refs(rows)
        loss_ref = torch.where(torch.isnan(loss_ref), loss, loss_ref)
        probe_flops = np.array([u.probe_flops for u in updates], dtype=np.int64)
        progress_reward = to_device(np.array([u.progress_reward for u in updates], dtype=np.float64), loss.device)
        return cls(loss=loss, accuracy=torch.stack([u.result.accuracy for u in updates]).double(),
                   diverged=diverged, kept=np.array([k.kept for k in keeps], dtype=np.float64),
                   tokens=np.array([k.tokens for k in keeps], dtype=np.int64),
                   padding=np.array([k.padding for k in keeps], dtype=np.int64),
                   kept_per_image=np.stack([k.per_image for k in keeps]) if per_image else None,
                   epoch=np.array([u.trained_epoch for u in updates], dtype=np.int64),
                   global_step=counters.global_step[rows].copy(), episode_step=counters.episode_step[rows].copy(),
                   loss_ref=loss_ref, flops=np.array([u.flops for u in updates], dtype=np.int64) + probe_flops,
                   probe_flops=probe_flops, progress_reward=progress_reward)


def settle_observations(obs: torch.Tensor, rows: np.ndarray, update_finite: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """(the observations (E, ...) to hand out, whether each of the runs at `rows` diverged
    (len(rows),) bool), on the device. A finite update (`update_finite`, over `rows`) can
    still leave weights that overflow (a huge lr): the next observation is not finite and
    the run cannot go on; it diverged, and its observation becomes zeros so that it stays
    in its space. A non-finite update diverged whatever its observation (which is handed
    out as it is)."""
    obs_finite = torch.isfinite(rows_of(obs, rows).flatten(1)).all(dim=1)
    blank = torch.zeros(obs.shape[0], dtype=torch.bool, device=obs.device)
    set_rows(blank, rows, update_finite & ~obs_finite)
    obs = torch.where(blank.view(-1, *(1,) * (obs.dim() - 1)), torch.zeros((), device=obs.device), obs)
    return obs, ~(update_finite & obs_finite)


def loss_terms(s: Steps) -> torch.Tensor:
    """L(ref) / L(t); 0 where the loss is not finite (a diverged step's reward stays finite)."""
    ok = torch.isfinite(s.loss) & (s.loss > 0)
    return torch.where(ok, s.loss_ref / torch.where(ok, s.loss, 1.0), 0.0)


def patch_terms(s: Steps, num_patches: int, n_patch_desired: int) -> np.ndarray:
    """-|z - z*| / z* with z = N - kept dropped patches, z* = N - n_patch_desired."""
    z_star = num_patches - n_patch_desired
    return -np.abs((num_patches - s.kept) - z_star) / z_star


def episode_ends(s: Steps, episode_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(terminated, truncated) on the device: a diverged run terminates; an episode's last
    step truncates."""
    last = to_device(s.episode_step >= episode_steps, s.diverged.device)
    return s.diverged.clone(), ~s.diverged & last


@dataclass
class Outcome:
    """E runs' rewards, terminations, truncations and info (`infos`), each (E, ...): the
    device's part as tensors until `on_host`. ``loss_ref`` is what a ``reward_fn`` needs
    beside the info."""

    rewards: Values
    terminated: Values
    truncated: Values
    info: dict
    loss_ref: Values

    def on_host(self, obs: Optional[torch.Tensor] = None) -> tuple[Optional[np.ndarray], "Outcome"]:
        """(`obs` as numpy, this outcome with numpy arrays only), the device's values and
        the observation copied in one trip (`patchenv.arrays.to_numpy_all`)."""
        names = [k for k, v in self.info.items() if isinstance(v, torch.Tensor)]
        head = [self.rewards, self.terminated, self.truncated, self.loss_ref]
        tensors = head + [self.info[k] for k in names] + ([] if obs is None else [obs])
        values = to_numpy_all(tensors)
        rewards, terminated, truncated, loss_ref = values[:4]
        info = {**self.info, **dict(zip(names, values[4:4 + len(names)]))}
        return (None if obs is None else values[-1]), Outcome(rewards, terminated, truncated, info, loss_ref)


def outcome(s: Steps, *, num_patches: int, n_patch_desired: int, kind: str, weights: tuple[float, float],
            episode_steps: int) -> Outcome:
    """Each step's episode end (`episode_ends`), reward and info's numbers (`infos`), from
    one computation of the loss and patch terms: the progress reward (``kind="progress"``),
    or the paper's ``loss_weight * L(ref) / L(t) + patch_weight * patch_term``, `weights` =
    (loss_weight, patch_weight). A ``reward_fn`` replaces the reward afterwards
    (`custom_rewards`)."""
    lt, pt = loss_terms(s), patch_terms(s, num_patches, n_patch_desired)
    terminated, truncated = episode_ends(s, episode_steps)
    if kind == "progress":
        rewards = s.progress_reward.clone()
    else:
        loss_weight, patch_weight = weights
        rewards = loss_weight * lt + patch_weight * to_device(pt, lt.device)
    return Outcome(rewards, terminated, truncated, infos(s, lt, pt), s.loss_ref)


def custom_rewards(o: Outcome, reward_fn: RewardFn, *, num_patches: int, n_patch_desired: int) -> np.ndarray:
    """Each step's reward by `reward_fn` (checked; it raises after the steps were applied),
    from the outcome's numbers on the host (note: one device sync where they are still on
    the device, ``tensor_obs=True``: a Python function reads Python numbers)."""
    h = o if isinstance(o.loss_ref, np.ndarray) else o.on_host()[1]
    i = h.info
    return np.array([checked_reward(reward_fn, StepStats(
        loss=float(i["loss"][r]), loss_ref=float(h.loss_ref[r]), accuracy=float(i["accuracy"][r]),
        kept=float(i["kept"][r]), kept_per_image=None if "kept_per_image" not in i else i["kept_per_image"][r],
        num_patches=num_patches, n_patch_desired=n_patch_desired, loss_term=float(i["loss_term"][r]),
        patch_term=float(i["patch_term"][r])), bool(i["diverged"][r]), int(i["global_step"][r]))
        for r in range(len(i["kept"]))])


def with_rewards(o: Outcome, rewards: np.ndarray) -> Outcome:
    """`o` with `rewards` (numpy), on the device where its rewards are."""
    if isinstance(o.rewards, torch.Tensor):
        return replace(o, rewards=to_device(rewards, o.rewards.device))
    return replace(o, rewards=rewards)


def row_info(infos: dict, i: int) -> dict:
    """Run i's info as its single env gives it from an info of arrays (E, ...): Python
    numbers from numpy, 0-d tensors from the device's tensors (``tensor_obs=True``: read
    only when converted, ``float(info["loss"])``), arrays copied; a key whose ``_key`` mask
    (Gymnasium's vector info) leaves run i out is left out."""
    return {key: _row(value, i) for key, value in infos.items()
            if not key.startswith("_") and (f"_{key}" not in infos or infos[f"_{key}"][i])}


def _row(value: Values, i: int):
    if isinstance(value, torch.Tensor):
        return value[i]
    return value[i].item() if value[i].ndim == 0 else value[i].copy()


def row_scalars(rewards: Values, terminated: Values, truncated: Values, i: int) -> tuple:
    """Run i's (reward, terminated, truncated) as its single env gives them: Python
    numbers from numpy, 0-d tensors on the device (``tensor_obs=True``)."""
    return tuple(_row(v, i) for v in (rewards, terminated, truncated))


def step_on_host(reward, terminated, truncated, info: dict) -> tuple:
    """A single env's (reward, terminated, truncated, info) as ``tensor_obs=False`` gives
    them (Python numbers), from ``tensor_obs=True``'s 0-d tensors, read in one trip (note:
    a device sync, for code written for Python numbers: the runner's records); values on
    the host already pass unchanged."""
    head = (reward, terminated, truncated)
    keys = [k for k, v in info.items() if isinstance(v, torch.Tensor)]
    tensors = [v for v in head if isinstance(v, torch.Tensor)] + [info[k] for k in keys]
    if not tensors:
        return reward, terminated, truncated, info
    values = iter(to_numpy_all(tensors))
    head = tuple(next(values).item() if isinstance(v, torch.Tensor) else v for v in head)
    return (*head, {**info, **{k: next(values).item() for k in keys}})


def infos(s: Steps, lt: torch.Tensor, pt: np.ndarray) -> dict[str, Values]:
    """The info's numbers (the env's docstring lists them), each an array (E,)
    (``kept_per_image``: (E, B), with per-image masks): tensors where the device measured
    them, numpy where the host knows them."""
    info = {"loss": s.loss, "accuracy": s.accuracy, "kept": s.kept, "tokens": s.tokens, "padding_tokens": s.padding,
            "epoch": s.epoch, "global_step": s.global_step, "loss_term": lt, "patch_term": pt,
            "diverged": s.diverged, "flops": s.flops, "probe_flops": s.probe_flops}
    if s.kept_per_image is not None:
        info["kept_per_image"] = s.kept_per_image
    return info

"""PatchSelectionEnv: an RL agent picks which image patches a ViT trains on.

The contract (spaces, reward, episodes, info) is the class docstring; the settings are
`patchenv.config.EnvConfig`'s fields.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import hashlib
import io
import math
import os
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Optional, Union

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces

from patchenv import data as data_mod
from patchenv import render as render_mod
from patchenv.atomic import atomic_torch_save
from patchenv.config import EnvConfig, check_device
from patchenv.cuda_graph import GraphedStep
from patchenv.flops import step_flops
from patchenv.progress import PROGRESS_FEATURES, ProgressTracker
from patchenv.rewards import StepStats, loss_term, patch_term
from patchenv.tensor_space import TensorBox, refuse_gymnasium_check_env
from patchenv.vit import SimpleViT, init_weights


def _one_torch_thread_after_fork() -> None:
    """In a forked child, torch runs on one intra-op thread. The parent's OpenMP pool does
    not survive fork(): its worker threads are gone but the pool believes them alive, so a
    child that runs a parallel op (a ViT step) waits for them forever. Gymnasium's async
    vector env does exactly that: it builds one env in the parent, which trains a ViT on
    several threads, then forks its workers. With one thread torch never enters the pool."""
    torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):  # POSIX; subprocess's fork+exec runs no Python hooks
    os.register_at_fork(after_in_child=_one_torch_thread_after_fork)


def resolve_device(device: Union[str, torch.device]) -> torch.device:
    """"auto" -> CUDA when present, else the CPU; raises a ValueError for anything but a
    CPU or an available CUDA device."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_device(device)
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but CUDA is not available; use 'auto' or 'cpu'")
    return dev


_ARGUMENTS = tuple(f.name for f in fields(EnvConfig))
# Seeds the draw of the test subset that eval_fraction < 1 keeps: a constant, so every run,
# seed and device evaluates on the same images (a CPU generator, whatever the device).
EVAL_SUBSET_SEED = 0
# Seeds the validation split that val_fraction > 0 carves from the training set: a
# constant, so every run and seed of a data set trains and validates on the same images.
VAL_SPLIT_SEED = 0
# Seeds the random patches evaluate() draws for selection="count": evaluation draws none
# of the run's random numbers, and every evaluation of a count keeps the same patches.
EVAL_COUNT_SEED = 0
# v1: the notebook's ViT head (LayerNorm after pooling; no final LayerNorm in the
# transformer). A v0 run's weights belong to the other architecture: refused, not loaded.
CHECKPOINT_FORMAT = "patchenv-checkpoint-v1"
_OLD_CHECKPOINT_FORMATS = {
    "patchenv-checkpoint-v0": "its ViT has the newer vit-pytorch head (a LayerNorm on every token before pooling), "
                              "not the notebook's (LayerNorm after pooling) that this patchenv trains",
}


class PatchSelectionEnv(gym.Env):
    """An RL agent picks which image patches a Vision Transformer trains on.

    ## Description
    A SimpleViT (`patchenv/vit.py`; the paper's: dim 128, depth 6, 16 heads, 4x4 patches,
    N = 64 on 32x32 images) really trains while the agent chooses, batch by batch, which
    of its N patches it sees. One `step` is one optimisation step of the ViT:

    1. the observation describes batch t, computed from the ViT's current weights;
    2. ``step(mask)`` trains on batch t with only the kept patches (dropped tokens are
       removed from the sequence, not zeroed, so the step really is cheaper), computes the
       reward, loads batch t+1 and returns its observation.

    The patch embedding that built the observation of batch t keeps its autograd graph
    and the training step reuses it, so no forward work is done twice. The data set sits
    on the device; shuffling and augmentation run there as batched tensor ops.

    ## Action Space
    With N patches per image and B images per batch:

    - ``selection="batch"`` (the paper): ``MultiBinary(N)``, one mask for the whole batch;
    - ``selection="image"``: ``MultiBinary((B, N))``, one mask per image (rows of unequal
      counts are padded to the largest, hidden from attention and from the pooling);
    - ``selection="count"``: ``Discrete(N)``, keep-rate control: action a keeps a + 1
      patches of every image, drawn uniformly at random for each image (the env's
      ``np_random``; equal counts, so no padding).

    1 keeps a patch, 0 drops it. numpy arrays, lists and torch tensors of any real dtype
    are accepted (a count: an integer, 0-d or one-element array or tensor). A mask must
    keep at least one patch (per image); a bad action raises a ValueError or TypeError
    saying what was expected and changes nothing.

    ## Observation Space
    ``Box(-inf, inf, float32)`` of shape, by ``obs_type`` (D = embedding width):

    - ``"embeddings"`` (default): (B, N, D), patch embeddings plus position embedding;
    - ``"pooled"``: (N, D), their mean over the batch (small enough for SB3);
    - ``"attention"``: (B, N), the paper's state: the first block's attention output on
      all patches, averaged over D;
    - ``"progress"``: (9,), how far training has got (`patchenv.progress`: budget and
      epoch done, training loss and trend, the held-out probe's loss, accuracy and its
      change, patches kept so far and last); the default for ``selection="count"``.

    numpy by default. ``tensor_obs=True``: float32 torch tensors on the env's device, for
    agents in the same process (a GPU agent then makes no host copy); read-only (shared
    with the env). Its space is a `patchenv.tensor_space.TensorBox`. Gymnasium's tools
    expect numpy: ``check_env`` is refused with a TypeError (check the env built with
    ``tensor_obs=False``: same dynamics and numbers), an async vector env too; a sync one
    (``gym.make_vec(..., vectorization_mode="sync")``) stacks the tensors on the device.

    ## Rewards
    ``loss_weight * L(ref) / L(t) + patch_weight * (-|z - z*| / z*)`` (`patchenv.rewards`):
    L(t) is this step's training loss, L(ref) the training loss of the run's step
    ``loss_ref_step`` (counted from 1; default 1, the run's first step; the steps before it
    are their own reference, loss term 1), z the dropped patches per image (mean over the
    batch), z* = N - ``n_patch_desired``. The paper's code weighs (1, 20); ``alpha`` sets
    (alpha, 1 - alpha); ``reward_fn`` replaces the formula. AgentViT asks for
    ``loss_ref_step = frequency``, the notebook's reference (its first rewarded batch).

    ``reward="progress"``: the held-out probe's loss decrease per unit of compute, paid on
    every ``probe_every``-th step, 0 between (`patchenv.progress`). The probe is held out
    with ``val_fraction > 0``; without a validation split it is a fixed batch of training
    images (a warning says so).

    ## Starting State
    ``reset(seed=s)`` starts a fresh training run: a new ViT, Adam optimiser and data
    order, all drawn from s. ``reset()`` without a seed continues the same run where it
    stopped (the next epoch, by default); ``reset(options={"new_run": True})`` forces a
    fresh run. The first observation describes the run's first pending batch. After
    ``load_checkpoint`` the next ``reset()`` without a seed continues the saved episode
    (same step count, so it truncates where the uninterrupted run did).

    ## Episode End
    - Truncation: after ``episode_steps`` steps (default one epoch; the last incomplete
      batch of an epoch is dropped).
    - Termination: a non-finite loss or gradient (that update is not applied), or a finite
      update after which the next observation is not finite (weights that overflow, e.g.
      from a huge lr; that observation is returned as zeros). ``info["diverged"]`` is True.

    ## Info
    Every step: ``loss``, ``accuracy`` (batch, fraction), ``kept`` (mean patches kept per
    image), ``kept_per_image`` (per-image mode), ``tokens`` (real tokens the transformer
    processed), ``padding_tokens`` (filler slots of uneven per-image masks), ``epoch``,
    ``global_step``, ``loss_term``, ``patch_term``, ``diverged``, ``flops`` (int: this
    step's training FLOPs, forward + backward, from the shapes by
    `patchenv.flops.step_flops`: the embedding of all N patches, the transformer on
    (B, largest count kept), padding included, the head; matrix products only; the
    observation's own extra work, e.g. ``obs_type="attention"``, is not training and not
    counted) plus, on a step that evaluated the probe, the probe's forward FLOPs, also
    given alone as ``probe_flops`` (0 on other steps). No wall-clock values
    (Gymnasium's checker compares the infos of two seeded steps): ``train_time_s`` and
    ``last_step_time_s`` are attributes of the unwrapped env.

    ## Rendering
    ``render_mode="rgb_array"``: ``render()`` returns a uint8 (H, W, 3) frame of the first
    images of the batch just trained (before any step: the pending batch), denormalised,
    with the patches the last action dropped greyed out (`patchenv.render`).

    ## Copying
    The env holds a live training run (a ViT, its optimiser, device tensors, an autograd
    graph), so ``pickle`` and ``copy.deepcopy`` refuse with a TypeError: continue a run
    elsewhere with ``save_checkpoint(path)`` and ``load_checkpoint(path)`` in a new env.

    Beside the Gymnasium API: ``evaluate(split, masks)`` (loss and accuracy on a whole
    split, or on the fixed test subset ``eval_fraction`` keeps; ``split="val"``: the
    validation split ``val_fraction`` holds out of the training set), ``save_checkpoint(path)``
    / ``load_checkpoint(path)`` (the whole training run, continued bit for bit),
    ``pending_images``, ``attention_state(images)`` and ``patch_credit()`` (each kept
    token's gradient norm in the last step: which patches the loss cared about) for agents.

    ## Arguments
    Keyword only: the fields of `patchenv.config.EnvConfig`, documented there, with the
    paper's CIFAR-10 setup as defaults; the env keeps them as ``env.config``. E.g.
    ``gymnasium.make("patchenv/Digits-v0", batch_size=32, selection="image")``.

    ## Version History
    - v0: initial release.
    - v0, checkpoint format v1: the ViT's head is the notebook's (LayerNorm of the token
      mean, no final LayerNorm in the transformer); v0 checkpoints are refused.
    - v0: ``val_fraction`` (a validation split held out of the training set, in the
      checkpoint's fingerprint when set) and ``info["flops"]``.
    - v0: ``selection="count"``, ``obs_type="progress"``, ``reward="progress"`` (with
      ``probe_size``, ``probe_every``, ``info["probe_flops"]``) and ``patch_credit()``.
    - v0: with ``tensor_obs=True`` the observation space is a ``TensorBox``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, **kwargs: Any):
        unknown = [name for name in kwargs if name not in _ARGUMENTS]
        if unknown:
            close = difflib.get_close_matches(unknown[0], _ARGUMENTS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; expected names among {sorted(_ARGUMENTS)}"
            raise TypeError(f"PatchSelectionEnv got an unexpected keyword argument {unknown[0]!r}{hint}")
        self.config = cfg = EnvConfig(**kwargs)
        self.device = resolve_device(cfg.device)
        if cfg.cuda_graph and self.device.type != "cuda":
            raise ValueError(f"cuda_graph=True needs a CUDA device; this env runs on {self.device}")

        images = cfg.dataset if isinstance(cfg.dataset, data_mod.ImageData) else data_mod.load_dataset(
            cfg.dataset, data_root=cfg.data_root, download=cfg.download, image_size=cfg.image_size)
        if images.image_size % cfg.patch_size != 0:
            raise ValueError(f"patch_size {cfg.patch_size} must divide the image size {images.image_size}")
        # The validation split leaves the training set before anything reads it; the
        # normalisation stays the data set's (its whole training set's mean and std).
        self.val_fraction = cfg.val_fraction
        if cfg.reward == "progress" and cfg.val_fraction <= 0:
            gym.logger.warn("reward='progress' without a validation split: its probe is a fixed batch of training "
                            "images, not held out; build the env with val_fraction > 0 (e.g. 0.1) for a held-out probe")
        split = val_split(len(images.train_y), cfg.val_fraction)
        val = None
        if split is not None:
            train_idx, val_idx = split
            val = (images.train_x[val_idx].to(self.device), images.train_y[val_idx].to(self.device))
            images = dataclasses.replace(images, train_x=images.train_x[train_idx], train_y=images.train_y[train_idx])
        if len(images.train_y) < cfg.batch_size:
            held = f" after the validation split of {len(val[1])}" if val is not None else ""
            raise ValueError(f"batch_size {cfg.batch_size} is larger than the training set "
                             f"({len(images.train_y)} images{held})")
        self.dataset_name = images.name
        self.data = images.to(self.device)
        self._val = val  # (images, labels) on the device, or None
        self._mean = torch.tensor(images.mean, device=self.device).view(1, -1, 1, 1)
        self._std = torch.tensor(images.std, device=self.device).view(1, -1, 1, 1)

        self.num_patches = n = (images.image_size // cfg.patch_size) ** 2
        if n < 2:
            side = images.image_size
            raise ValueError(f"patch_size {cfg.patch_size} cuts the {side}x{side} images into {n} patch: there is "
                             f"nothing to choose; use a patch size of at most {side // 2} that divides {side}")
        if not 0 < cfg.n_patch_desired < n:
            raise ValueError(f"n_patch_desired must be an integer in [1, {n - 1}], got {cfg.n_patch_desired!r}")
        self._data_shape = dict(image_size=images.image_size, num_classes=images.num_classes,
                                channels=images.channels)
        self.vit_config = cfg.vit_config(**self._data_shape)
        # The settings agents and front ends read, from the (frozen) config.
        self.batch_size, self.lr, self.n_patch_desired = cfg.batch_size, cfg.lr, cfg.n_patch_desired
        self.selection, self.obs_type, self.tensor_obs = cfg.selection, cfg.obs_type, cfg.tensor_obs
        self.amp, self.compile, self.eval_batch_size = cfg.amp, cfg.compile, cfg.eval_batch_size
        self.alpha, self.reward_fn, self.loss_ref_step = cfg.alpha, cfg.reward_fn, cfg.loss_ref_step
        self.loss_weight, self.patch_weight = cfg.reward_weights
        self.steps_per_epoch = len(images.train_y) // self.batch_size  # last partial batch dropped
        self.eval_fraction = cfg.eval_fraction
        self._eval_idx = eval_subset(len(images.test_y), cfg.eval_fraction)
        if self._eval_idx is not None:
            self._eval_idx = self._eval_idx.to(self.device)
        self.episode_steps = cfg.episode_steps if cfg.episode_steps is not None else self.steps_per_epoch

        b, d = self.batch_size, cfg.dim
        self.action_space = {"batch": spaces.MultiBinary(n), "image": spaces.MultiBinary((b, n)),
                             "count": spaces.Discrete(n)}[self.selection]
        obs_shape = {"embeddings": (b, n, d), "pooled": (n, d), "attention": (b, n),
                     "progress": (len(PROGRESS_FEATURES),)}[self.obs_type]
        box = dict(low=-np.inf, high=np.inf, shape=obs_shape, dtype=np.float32)
        self.observation_space = TensorBox(**box, device=self.device) if self.tensor_obs else spaces.Box(**box)

        # Run state; created by reset() (or load_checkpoint()).
        self.model: Optional[SimpleViT] = None
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self._forward_tokens: Optional[Callable] = None
        self._data_gen: Optional[torch.Generator] = None
        self._perm: Optional[torch.Tensor] = None
        self._pos = 0  # index of the pending batch within the epoch
        self.epoch = 0
        self.global_step = 0
        self._episode_step = 0
        self._episode_over = False
        self._loss_ref: Optional[float] = None
        self._batch_x: Optional[torch.Tensor] = None
        self._batch_y: Optional[torch.Tensor] = None
        self._tokens: Optional[torch.Tensor] = None
        self._obs: Optional[torch.Tensor] = None
        self.train_time_s = 0.0  # cumulative wall-clock of step() in this run (evaluation excluded)
        self.last_step_time_s = 0.0
        self._restored = False  # set by load_checkpoint: the next reset() continues its episode
        self._graphed: Optional[GraphedStep] = None  # the CUDA-graph step (cuda_graph=True), per run
        self._flops: dict[int, int] = {}  # training FLOPs of a step by sequence length K (step_flops)
        self.render_mode = cfg.render_mode
        # The run's planned length in steps, for schedules and progress (None: unknown).
        self.total_steps = (None if cfg.budget_epochs is None
                            else max(1, round(cfg.budget_epochs * self.steps_per_epoch)))
        self._rendered = None  # (images, keep mask) of the last trained batch, for render()
        # The progress observation and reward: statistics of the run and a held-out probe,
        # a fixed batch of the validation split (the training set's when there is none),
        # unaugmented and normalised once.
        self.reward_kind = cfg.reward
        self._progress = ProgressTracker(n)
        self._uses_probe = self.obs_type == "progress" or self.reward_kind == "progress"
        self._probe = None
        self._pending_probe_flops = 0  # a probe run by reset(), charged to the next step
        if self._uses_probe:
            px, py = self._val if self._val is not None else (self.data.train_x, self.data.train_y)
            px, py = px[:cfg.probe_size], py[:cfg.probe_size]
            self._probe = (data_mod.normalize(data_mod.to_unit(px), self._mean, self._std), py)
            self._probe_flops = step_flops(self.vit_config, len(py), n)["forward"]
        self._credit: Optional[torch.Tensor] = None  # dL/d(token) of the last step, for patch_credit()

    # -- Gymnasium API ----------------------------------------------------------------
    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        if self.tensor_obs:
            refuse_gymnasium_check_env()  # it cannot compare tensors; a clear refusal instead of its crash
        super().reset(seed=seed)
        options = options or {}
        restored, self._restored = self._restored, False
        if seed is not None or self.model is None or options.get("new_run", False):
            self._new_run()
        elif restored and not self._episode_over:
            # The first reset after load_checkpoint continues the saved episode, so that a
            # resumed run truncates where the uninterrupted one did (exact resume).
            return self._observation(), {"epoch": self.epoch, "global_step": self.global_step}
        self._episode_step = 0
        self._episode_over = False
        if self.obs_type == "progress":  # a new episode: the share of it done starts again at 0
            self._obs = self._make_obs(None)
        return self._observation(), {"epoch": self.epoch, "global_step": self.global_step}

    def step(self, action):
        if self.model is None:
            raise gym.error.ResetNeeded("call reset() before step(): there is no training run yet")
        if self._episode_over:
            raise gym.error.ResetNeeded("the episode has ended (terminated or truncated); call reset() before step()")
        keep, kept_per_image = self._parse_action(action)  # validated before anything changes

        # No sync here: the previous step ended with one, and a torch mask was synchronised
        # by _parse_action (its length decides the sequence length).
        t0 = time.perf_counter()
        model, y = self.model, self._batch_y
        model.train()
        graphed = None if self._graphed is None else self._graphed(self._batch_x, y, keep)
        if graphed is not None:  # the whole step replayed from a CUDA graph (the update is in it)
            # note: the step's one CPU-GPU sync point (the reward needs the loss on the host).
            loss_v, acc_v, grad_v = graphed.tolist()
            diverged = not (math.isfinite(loss_v) and math.isfinite(grad_v))
        else:
            # With CUDA graphs the observation's embedding carries no autograd graph.
            tokens = self._tokens if self._tokens.requires_grad else None
            with self._autocast():
                if tokens is None:
                    tokens = model.embed(self._batch_x)
                logits = self._forward_tokens(tokens, keep)
                loss = F.cross_entropy(logits.float(), y)
            tokens.retain_grad()  # the backward pass computes dL/d(token) anyway: keep it for patch_credit()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self._credit = tokens.grad
            grad_norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
            correct = (logits.argmax(dim=-1) == y).float().mean()
            # note: the step's one CPU-GPU sync point (the reward needs the loss on the host).
            loss_v, acc_v, grad_v = torch.stack([loss.detach().float(), correct, grad_norm.float()]).tolist()
            diverged = not (math.isfinite(loss_v) and math.isfinite(grad_v))
            if diverged:
                self.optimizer.zero_grad(set_to_none=True)  # the non-finite update is not applied
            else:
                self.optimizer.step()

        # The transformer ran on (B, largest count kept): select_tokens pads uneven per-image
        # masks to the batch's largest count and needs no padding otherwise.
        n_tokens = int(kept_per_image.sum())
        longest = int(kept_per_image.max())
        n_padding = self.batch_size * longest - n_tokens
        flops = self._train_flops(longest)
        kept = float(kept_per_image.mean())
        trained_epoch = self.epoch
        self.global_step += 1
        self._episode_step += 1
        if self._loss_ref is None and not diverged and self.global_step >= self.loss_ref_step:
            self._loss_ref = loss_v
        # Progress statistics and, every probe_every steps, the probe (with the updated
        # weights, before the next batch's observation is made from them).
        self._progress.after_step(loss_v, kept, flops + self._pending_probe_flops,
                                  self._train_flops(self.num_patches) + self._pending_probe_flops)
        probe_flops, self._pending_probe_flops = self._pending_probe_flops, 0
        progress_reward = 0.0
        if self._uses_probe and not diverged and self.global_step % self.config.probe_every == 0:
            progress_reward = self._run_probe()
            probe_flops += self._probe_flops
        if self.render_mode is not None:
            self._remember_for_render(keep)
        self._advance()  # load batch t+1 and its observation with the updated weights
        obs = self._observation()  # numpy: the device-to-host copy waits for the GPU
        if not diverged and not (bool(torch.isfinite(obs).all()) if self.tensor_obs else np.isfinite(obs).all()):
            # A finite update can still leave weights that overflow (a huge lr): the next
            # observation is not finite and the run cannot go on. End the episode and hand
            # out zeros so the observation stays in its space. (numpy: no extra sync.)
            diverged = True
            self._obs = torch.zeros_like(self._obs)
            obs = self._observation()
        if self.tensor_obs and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # note: sync so the clock reads finished work
        self.last_step_time_s = time.perf_counter() - t0
        self.train_time_s += self.last_step_time_s

        # Until L(ref) is set (steps before loss_ref_step) a step is its own reference.
        loss_ref = self._loss_ref if self._loss_ref is not None else loss_v
        lt = loss_term(loss_v, loss_ref)
        pt = patch_term(kept, self.num_patches, self.n_patch_desired)
        stats = StepStats(loss=loss_v, loss_ref=loss_ref,
                          accuracy=acc_v, kept=kept,
                          kept_per_image=kept_per_image if self.selection == "image" else None,
                          num_patches=self.num_patches, n_patch_desired=self.n_patch_desired,
                          loss_term=lt, patch_term=pt)
        terminated = diverged
        truncated = (not terminated) and self._episode_step >= self.episode_steps
        self._episode_over = terminated or truncated  # settled before a reward_fn can fail
        if self.reward_fn is not None:
            reward = self._custom_reward(stats, diverged)
        elif self.reward_kind == "progress":
            reward = progress_reward
        else:
            reward = self.loss_weight * lt + self.patch_weight * pt
        info = {"loss": loss_v, "accuracy": acc_v, "kept": kept, "tokens": n_tokens, "padding_tokens": n_padding,
                "epoch": trained_epoch, "global_step": self.global_step, "loss_term": lt, "patch_term": pt,
                "diverged": diverged, "flops": flops + probe_flops, "probe_flops": probe_flops}
        if self.selection == "image":
            info["kept_per_image"] = kept_per_image.copy()
        return obs, float(reward), terminated, truncated, info

    def _train_flops(self, seq_len: int) -> int:
        """Training FLOPs of one step on (B, seq_len) tokens (`step_flops`): host
        arithmetic on the shapes, cached per sequence length."""
        flops = self._flops.get(seq_len)
        if flops is None:
            flops = self._flops[seq_len] = step_flops(self.vit_config, self.batch_size, seq_len)["total"]
        return flops

    def _custom_reward(self, stats: StepStats, diverged: bool) -> float:
        """``reward_fn(stats)``, checked. It runs after the training step: when it fails,
        the step has been applied and the env is consistent (counters, pending batch,
        episode state), so the caller gets the error and the next ``step`` goes on."""
        try:
            value = self.reward_fn(stats)
        except Exception as e:
            raise RuntimeError(f"reward_fn raised {type(e).__name__}: {e} (the training step {self.global_step} "
                               f"was applied; the env is consistent and the next step() continues)") from e
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"reward_fn must return a real number, got {type(value).__name__} (the training step "
                            f"{self.global_step} was applied)")
        value = float(value)
        if not math.isfinite(value):
            if diverged:
                return 0.0  # a diverged step may give a non-finite reward; it ends the episode anyway
            raise ValueError(f"reward_fn must return a finite number, got {value} (the training step "
                             f"{self.global_step} was applied)")
        return value

    # -- rendering and copying ------------------------------------------------------------
    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() was called without a render_mode; build the env with render_mode='rgb_array'")
            return None
        if self.model is None:
            raise gym.error.ResetNeeded("call reset() before render(): there is no batch yet")
        images, keep = self._rendered if self._rendered is not None else (self._batch_x[:render_mod.IMAGES], None)
        unit = images * self._std + self._mean  # denormalised to [0, 1]
        return render_mod.frame(unit, keep, self.config.patch_size)

    def _remember_for_render(self, keep) -> None:
        n = min(render_mod.IMAGES, self.batch_size)
        mask = torch.zeros(n, self.num_patches, dtype=torch.bool, device=self.device)
        if keep is None:
            mask[:] = True
        elif keep.dtype == torch.bool:
            mask[:] = keep[:n] if keep.dim() == 2 else keep
        elif keep.dim() == 1:
            mask[:, keep] = True
        else:
            mask.scatter_(1, keep[:n], True)
        self._rendered = (self._batch_x[:n].clone(), mask)

    def __getstate__(self):
        raise TypeError("a PatchSelectionEnv holds a live training run and cannot be pickled or deep-copied; "
                        "use env.unwrapped.save_checkpoint(path) and load_checkpoint(path) in a new env")

    # -- what agents may read between steps -------------------------------------------------
    @property
    def pending_images(self) -> torch.Tensor:
        """The augmented, normalised batch the next ``step`` trains on, (B, C, H, W)."""
        if self._batch_x is None:
            raise gym.error.ResetNeeded("call reset() first: there is no pending batch")
        return self._batch_x

    @torch.no_grad()
    def attention_state(self, images: torch.Tensor) -> torch.Tensor:
        """The paper's state (B, N) of `images` under the ViT's current weights, on the
        device. AgentViT's s' is this, for the images just trained on."""
        if self.model is None:
            raise gym.error.ResetNeeded("call reset() first: there is no ViT yet")
        with self._autocast():
            return self.model.attention_state(self.model.embed(images)).float()

    def patch_credit(self) -> torch.Tensor:
        """Per-patch credit of the last training step, (B, N) float32 on the device: the
        L2 norm over D of the loss's gradient with respect to each patch token (after the
        position embedding), which the backward pass computed anyway. A dropped patch
        gets 0: it did not reach the loss. Large values mark the patches whose content
        the update depended on (what AgentViT's Q target never sees)."""
        if self._graphed is not None:
            raise ValueError("patch_credit() needs the eager training step; this env replays a CUDA graph "
                             "(cuda_graph=True), which keeps no token gradients")
        if self._credit is None:
            raise gym.error.ResetNeeded("patch_credit() describes the last training step: call step() first")
        # The transformer gathered the kept tokens from the full (B, N, D) embedding, so
        # the gradient there is already zero at the dropped positions.
        return self._credit.float().norm(dim=-1)

    @torch.no_grad()
    def _run_probe(self) -> float:
        """Evaluate the probe with every patch; record it; returns the progress reward of
        the interval it closes."""
        x, y = self._probe
        model = self.model
        was_training = model.training
        model.eval()
        with self._autocast():
            logits = model(x)
        model.train(was_training)
        loss, acc = torch.stack([F.cross_entropy(logits.float(), y),
                                 (logits.argmax(-1) == y).float().mean()]).tolist()  # note: one sync
        return self._progress.after_probe(loss, acc, self._probe_flops)

    # -- evaluation ---------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, split: str = "test", masks: Any = None) -> dict:
        """Loss and accuracy of the current ViT on a whole split, unaugmented.

        masks=None uses every patch (the paper's protocol). Otherwise a fixed mask (N,) or
        (B, N), or a callable ``masks(obs) -> mask`` given this env's observation of each
        evaluation batch (batches of ``batch_size``; an agent's ``act`` fits here). The
        test split is the fixed subset ``eval_fraction`` keeps (all of it by default);
        ``n`` in the result counts the images evaluated. ``"val"``: the validation split
        (``val_fraction > 0``), whole; ``"train"``: the images trained on (without it).
        Changes no training state and draws no random numbers."""
        if self.model is None:
            raise gym.error.ResetNeeded("call reset() before evaluate(): there is no ViT yet")
        if split not in ("test", "val", "train"):
            raise ValueError(f"split must be 'test', 'val' or 'train', got {split!r}")
        if split == "val" and self._val is None:
            raise ValueError("split='val' needs a validation split: build the env with val_fraction > 0 (e.g. 0.1)")
        xs, ys = {"test": (self.data.test_x, self.data.test_y), "train": (self.data.train_x, self.data.train_y),
                  "val": self._val}[split]
        if split == "test" and self._eval_idx is not None:
            xs, ys = xs[self._eval_idx], ys[self._eval_idx]
        model = self.model
        was_training = model.training
        model.eval()
        # With masks, batches have the training shape (B, ...) so an agent's act() fits;
        # the last partial batch is padded with copies of its first image, then cut off.
        bs = self.eval_batch_size if masks is None else self.batch_size
        count_rng = np.random.default_rng(EVAL_COUNT_SEED)  # the patches a count keeps, not the run's draws
        total_loss = torch.zeros((), device=self.device)
        total_correct = torch.zeros((), device=self.device)
        n = len(ys)
        for start in range(0, n, bs):
            x = data_mod.normalize(data_mod.to_unit(xs[start:start + bs]), self._mean, self._std)
            y = ys[start:start + bs]
            r = len(y)
            with self._autocast():
                if masks is None:
                    logits = model(x)
                else:
                    if r < bs:
                        x = torch.cat([x, x[:1].expand(bs - r, -1, -1, -1)])
                    tokens = model.embed(x)
                    mask = masks(self._make_obs(tokens, for_agent=True)) if callable(masks) else masks
                    keep, _ = self._parse_action(mask, rng=count_rng)
                    logits = model.forward_tokens(tokens, keep)[:r]
            total_loss += F.cross_entropy(logits.float(), y, reduction="sum")
            total_correct += (logits.argmax(-1) == y).sum()
        model.train(was_training)
        loss_v, correct_v = torch.stack([total_loss, total_correct.float()]).tolist()  # note: one sync
        return {"accuracy": correct_v / n, "loss": loss_v / n, "n": n}

    # -- checkpoints ----------------------------------------------------------------------
    def save_checkpoint(self, path: Union[str, os.PathLike]) -> None:
        """Save the whole training run (ViT, optimiser, every RNG, data order and position,
        pending batch, reward reference, counters). Written atomically: temp file + rename."""
        if self.model is None:
            raise gym.error.ResetNeeded("call reset() before save_checkpoint(): there is no training run yet")
        state = {
            "format": CHECKPOINT_FORMAT,
            "config": self._fingerprint(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "np_random": self.np_random.bit_generator.state,
            "np_random_seed": getattr(self, "_np_random_seed", None),
            "data_gen": self._data_gen.get_state(),
            "perm": self._perm,
            "pos": self._pos,
            "epoch": self.epoch,
            "global_step": self.global_step,
            "episode_step": self._episode_step,
            "episode_over": self._episode_over,
            "loss_ref": self._loss_ref,
            "batch_x": self._batch_x,
            "batch_y": self._batch_y,
            "train_time_s": self.train_time_s,
            "progress": self._progress.state_dict(),
            "pending_probe_flops": self._pending_probe_flops,
        }
        payload = io.BytesIO()
        torch.save(state, payload)
        payload = payload.getvalue()
        # The checksum covers the whole run: a file damaged on disk is refused, not loaded.
        atomic_torch_save({"format": CHECKPOINT_FORMAT, "sha256": hashlib.sha256(payload).hexdigest(),
                           "payload": payload}, path)

    def load_checkpoint(self, path: Union[str, os.PathLike]):
        """Restore a run saved by `save_checkpoint`; no reset needed. Returns the pending
        observation. The env must be built with the same configuration."""
        path = Path(path)
        try:
            wrapper = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:
            raise ValueError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from None
        if isinstance(wrapper, dict) and wrapper.get("format") in _OLD_CHECKPOINT_FORMATS:
            raise ValueError(f"{path} is a {wrapper['format']} checkpoint: "
                             f"{_OLD_CHECKPOINT_FORMATS[wrapper['format']]}; start a new run")
        if not isinstance(wrapper, dict) or wrapper.get("format") != CHECKPOINT_FORMAT \
                or not isinstance(wrapper.get("payload"), bytes):
            raise ValueError(f"{path} is not a patchenv checkpoint ({CHECKPOINT_FORMAT})")
        if hashlib.sha256(wrapper["payload"]).hexdigest() != wrapper.get("sha256"):
            raise ValueError(f"checkpoint {path} is damaged: its contents do not match their checksum")
        try:
            state = torch.load(io.BytesIO(wrapper["payload"]), map_location=self.device, weights_only=False)
            saved, ours = state["config"], self._fingerprint()
        except Exception as e:
            raise ValueError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from None
        if saved != ours:
            diff = ", ".join(f"{k} {saved.get(k)!r} (saved) != {ours.get(k)!r}"
                             for k in sorted(saved.keys() | ours.keys()) if saved.get(k) != ours.get(k))
            raise ValueError(f"checkpoint {path} was saved by an env with another configuration: {diff}")
        # Everything is read into new objects first: a file that fails here leaves the
        # running run as it was.
        parts = self._run_parts(model_seed=None)
        progress = ProgressTracker(self.num_patches)
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
        self._install_run(parts)
        self._np_random = np_random
        self._np_random_seed = state["np_random_seed"]
        self._restore_data_gen(state["data_gen"].cpu())  # generator states are CPU byte tensors
        self._perm = state["perm"].to(self.device)
        self._pos = state["pos"]
        self.epoch = state["epoch"]
        self.global_step = state["global_step"]
        self._episode_step = state["episode_step"]
        self._episode_over = state["episode_over"]
        self._loss_ref = state["loss_ref"]
        self._batch_x = state["batch_x"].to(self.device)
        self._batch_y = state["batch_y"].to(self.device)
        self.train_time_s = state["train_time_s"]
        self._progress = progress
        self._pending_probe_flops = state.get("pending_probe_flops", 0)
        self._credit = None
        self._restored = True
        self._prepare_observation()
        return self._observation()

    # -- internals ------------------------------------------------------------------------
    def _restore_data_gen(self, saved: torch.Tensor) -> None:
        """The data order's generator from a checkpoint. CPU and CUDA generators keep
        different states (5056 vs 16 bytes), so a run moved to the other device type is
        reseeded from a hash of the saved state: deterministic, and the pending batch is
        the saved one, but later epochs' order and crops differ from the original
        device's. On the same device type the run continues exactly."""
        try:
            self._data_gen.set_state(saved)
        except RuntimeError:
            digest = hashlib.sha256(saved.numpy().tobytes()).digest()
            self._data_gen.manual_seed(int.from_bytes(digest[:8], "little") >> 1)

    def _fingerprint(self) -> dict:
        return self.config.fingerprint(dataset_name=self.dataset_name, **self._data_shape)

    def _autocast(self, cache_enabled: bool = True):
        # A CUDA graph capture needs the autocast cache off (cached casts would be stale).
        if self.amp == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, cache_enabled=cache_enabled)
        return torch.autocast(device_type=self.device.type, enabled=False)

    def _build_run(self, model_seed: Optional[int]) -> None:
        self._install_run(self._run_parts(model_seed))

    def _run_parts(self, model_seed: Optional[int]) -> dict:
        """A fresh ViT, optimiser, step functions and data generator, not yet the env's
        (load_checkpoint fills them and checks the file before the running run changes)."""
        # The constructor's default init draws from the global torch RNG; our weights come
        # from init_weights (or a checkpoint), so keep the user's global RNG untouched.
        with torch.random.fork_rng(devices=[]):
            model = SimpleViT(**self.vit_config)
        model = model.to(self.device)
        if model_seed is not None:
            init_weights(model, torch.Generator(self.device).manual_seed(model_seed))
        optimizer = make_optimizer(model, self.lr, capturable=self.config.cuda_graph)
        forward_tokens = torch.compile(model.forward_tokens, dynamic=True) if self.compile else model.forward_tokens
        graphed = None
        if self.config.cuda_graph:
            b, c, s = self.batch_size, self._data_shape["channels"], self._data_shape["image_size"]
            graphed = GraphedStep(model, optimizer, torch.empty(b, c, s, s, device=self.device),
                                  torch.empty(b, dtype=torch.long, device=self.device),
                                  lambda: self._autocast(cache_enabled=False))
        return dict(model=model, optimizer=optimizer, forward_tokens=forward_tokens, graphed=graphed,
                    data_gen=torch.Generator(self.device))

    def _install_run(self, parts: dict) -> None:
        self.model, self.optimizer = parts["model"], parts["optimizer"]
        self._forward_tokens, self._graphed, self._data_gen = parts["forward_tokens"], parts["graphed"], parts["data_gen"]

    def _new_run(self) -> None:
        model_seed, data_seed = (int(s) for s in self.np_random.integers(0, 2**62, size=2))
        self._build_run(model_seed)
        self._rendered = None
        self._data_gen.manual_seed(data_seed)
        self.epoch, self.global_step, self._episode_step = 0, 0, 0
        self._loss_ref = None
        self.train_time_s = 0.0
        self.last_step_time_s = 0.0
        self._perm = torch.randperm(len(self.data.train_y), device=self.device, generator=self._data_gen)
        self._pos = 0
        self._credit = None
        self._progress.reset()
        self._pending_probe_flops = 0
        if self._uses_probe:  # the untrained ViT's probe: the first observation has one
            self._run_probe()
            self._pending_probe_flops = self._probe_flops
        self._load_batch()

    def _advance(self) -> None:
        self._pos += 1
        if self._pos >= self.steps_per_epoch:
            self.epoch += 1
            self._perm = torch.randperm(len(self.data.train_y), device=self.device, generator=self._data_gen)
            self._pos = 0
        self._load_batch()

    def _load_batch(self) -> None:
        idx = self._perm[self._pos * self.batch_size:(self._pos + 1) * self.batch_size]
        x = data_mod.augment(data_mod.to_unit(self.data.train_x[idx]), self._data_gen)
        self._batch_x = data_mod.normalize(x, self._mean, self._std)
        self._batch_y = self.data.train_y[idx]
        self._prepare_observation()

    def _prepare_observation(self) -> None:
        # The embedding keeps its autograd graph: the eager training step on this batch
        # reuses it. A CUDA-graph step embeds inside its graph, so it needs none.
        self.model.train()
        with self._autocast(), torch.set_grad_enabled(self._graphed is None):
            self._tokens = self.model.embed(self._batch_x)  # (B, N, D)
        self._obs = self._make_obs(self._tokens)

    @torch.no_grad()
    def _make_obs(self, tokens: Optional[torch.Tensor], for_agent: bool = False):
        if self.obs_type == "progress":  # the run's statistics; the batch's tokens do not enter
            budget_done = (self.global_step / self.total_steps if self.total_steps is not None
                           else self._episode_step / self.episode_steps)
            obs = torch.from_numpy(self._progress.observation(budget_done, self._pos / self.steps_per_epoch))
            obs = obs.to(self.device)
            if for_agent:
                return obs if self.tensor_obs else obs.cpu().numpy()
            return obs
        tokens = tokens.detach()
        if self.obs_type == "embeddings":
            obs = tokens
        elif self.obs_type == "pooled":
            obs = tokens.mean(dim=0)
        else:
            with self._autocast():
                obs = self.model.attention_state(tokens)
        obs = obs.float()
        if for_agent:
            return obs if self.tensor_obs else obs.cpu().numpy()
        return obs

    def _observation(self):
        if self.tensor_obs:
            return self._obs
        return self._obs.cpu().numpy()  # note: device-to-host copy (the Gymnasium boundary)

    def _parse_action(self, action, rng: Optional[np.random.Generator] = None):
        """Validate an action; return (keep for the ViT, patches kept per image (B,) numpy).

        Raises TypeError/ValueError naming what was expected; nothing is changed. A count
        (``selection="count"``) draws its patches from `rng` (the env's ``np_random``)."""
        if self.selection == "count":
            return self._parse_count(action, self.np_random if rng is None else rng)
        n, b = self.num_patches, self.batch_size
        expected = f"({n},)" if self.selection == "batch" else f"({b}, {n})"
        what = f"a 0/1 mask of shape {expected} (numpy array, list or torch tensor)"
        if action is None or isinstance(action, (str, bytes, dict)):
            raise TypeError(f"action must be {what}, got {type(action).__name__}")
        if isinstance(action, torch.Tensor):
            kind = ("meta-device tensor (it holds no values)" if action.is_meta else
                    "nested tensor" if action.is_nested else
                    f"quantized tensor ({action.dtype}; call .dequantize() first)" if action.is_quantized else
                    f"sparse tensor (layout {action.layout}; call .to_dense() first)" if action.layout != torch.strided
                    else None)
            if kind is not None:  # none of these converts to numpy
                raise TypeError(f"action must be {what}, a dense tensor of real dtype; got a {kind}")
            t = action.detach()
            if t.is_floating_point() and t.dtype not in (torch.float16, torch.float32, torch.float64):
                t = t.float()  # bfloat16 and float8 have no numpy dtype
            a = t.cpu().numpy()  # note: sync; the mask's length decides the sequence length
        elif np.ma.is_masked(action):
            raise TypeError(f"action must be {what}, got a masked array with masked entries (its mask would be "
                            f"ignored; fill them first, e.g. action.filled(0))")
        else:
            try:
                a = np.asarray(action)
            except Exception as e:
                raise TypeError(f"action must be {what}; could not convert it ({e})") from None
        if a.dtype == object or a.dtype.kind not in "biuf":
            raise TypeError(f"action must be {what}, got dtype {a.dtype}")
        shape = (n,) if self.selection == "batch" else (b, n)
        if a.shape != shape:
            raise ValueError(f"action must be {what}, got shape {a.shape}")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise ValueError(f"action must be {what}; it holds NaN or infinite values")
        if not np.isin(a, (0, 1)).all():
            bad = np.unique(a[~np.isin(a, (0, 1))])[:5]
            raise ValueError(f"action must be {what}; it holds other values: {bad.tolist()}")
        mask = a.astype(bool)
        counts = mask.sum(axis=-1)
        if (counts == 0).any():
            where = "the mask" if self.selection == "batch" else f"row(s) {np.flatnonzero(counts == 0)[:5].tolist()}"
            raise ValueError(f"action must keep at least one patch; {where} keep(s) none")
        if self.selection == "batch":
            per_image = np.full(b, counts, dtype=np.int64)
            if counts == n:
                return None, per_image
            return torch.from_numpy(np.flatnonzero(mask)).to(self.device), per_image
        per_image = counts.astype(np.int64)
        if (counts == counts[0]).all():
            if counts[0] == n:
                return None, per_image
            # Equal counts: per-image index rows, no padding, same cost as a shared mask.
            idx = np.argsort(~mask, axis=1, kind="stable")[:, :counts[0]]
            return torch.from_numpy(np.ascontiguousarray(idx)).to(self.device), per_image
        return torch.from_numpy(mask).to(self.device), per_image


    def _parse_count(self, action, rng: np.random.Generator):
        n, b = self.num_patches, self.batch_size
        what = f"an integer in [0, {n - 1}] (action a keeps a + 1 patches per image)"
        if isinstance(action, (bool, np.bool_)) or action is None or isinstance(action, (str, bytes, dict)):
            raise TypeError(f"action must be {what}, got {type(action).__name__}")
        if isinstance(action, torch.Tensor):
            a = action.detach().cpu().numpy()
        else:
            try:
                a = np.asarray(action)
            except Exception as e:
                raise TypeError(f"action must be {what}; could not convert it ({e})") from None
        if a.dtype.kind not in "iu":
            raise TypeError(f"action must be {what}, got dtype {a.dtype}")
        if a.size != 1 or a.ndim > 1:
            raise ValueError(f"action must be {what} (a scalar, or an array of one element), got shape {a.shape}")
        a = int(a.reshape(()))
        if not 0 <= a < n:
            raise ValueError(f"action must be {what}, got {a}")
        k = a + 1
        per_image = np.full(b, k, dtype=np.int64)
        if k == n:
            return None, per_image
        # k distinct patches per image, uniformly: the first k of a random permutation per row.
        idx = np.sort(np.argsort(rng.random((b, n)), axis=1)[:, :k], axis=1)
        return torch.from_numpy(idx).to(self.device), per_image


def _signature() -> inspect.Signature:
    """``PatchSelectionEnv(**kwargs)`` as it is called: EnvConfig's fields as keyword-only
    parameters with their defaults, for help(), inspect and editors."""
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in inspect.signature(EnvConfig).parameters.values()]
    return inspect.Signature([inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *params])


PatchSelectionEnv.__init__.__signature__ = _signature()


def eval_subset(n_test: int, fraction: float) -> Optional[torch.Tensor]:
    """Indices (ascending, CPU) of the test images that ``eval_fraction`` keeps:
    round(fraction * n_test) of them, drawn by ``torch.randperm`` from a CPU generator
    seeded with `EVAL_SUBSET_SEED`; None for the whole split."""
    if fraction >= 1.0:
        return None
    k = round(fraction * n_test)
    if k < 1:
        raise ValueError(f"eval_fraction {fraction} keeps no image of the {n_test}-image test split")
    perm = torch.randperm(n_test, generator=torch.Generator().manual_seed(EVAL_SUBSET_SEED))
    return perm[:k].sort().values


def val_split(n_train: int, fraction: float) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """(train indices, validation indices), each ascending, CPU, disjoint and together
    range(n_train): the validation split ``val_fraction`` holds out, round(fraction *
    n_train) images (Python's round, half to even), the first of a ``torch.randperm``
    drawn from a CPU generator seeded with `VAL_SPLIT_SEED`; None for fraction 0."""
    if fraction <= 0.0:
        return None
    k = round(fraction * n_train)
    if not 0 < k < n_train:
        what = "no image" if k < 1 else "every image"
        raise ValueError(f"val_fraction {fraction} holds out {what} of the {n_train}-image training set")
    perm = torch.randperm(n_train, generator=torch.Generator().manual_seed(VAL_SPLIT_SEED))
    return perm[k:].sort().values, perm[:k].sort().values


def make_optimizer(model: torch.nn.Module, lr: float, capturable: bool = False) -> torch.optim.Optimizer:
    """The paper's optimiser, Adam with a constant lr. The fused kernel (CPU and CUDA) does
    the update in one pass over the weights: ~3x cheaper than the default on CPU here,
    which matters once dropping patches has made the rest of the step small.
    ``capturable`` lets a CUDA graph record it (same kernel, same numbers)."""
    return torch.optim.Adam(model.parameters(), lr=lr, fused=True, capturable=capturable)

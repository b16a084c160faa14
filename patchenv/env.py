"""PatchSelectionEnv: an RL agent picks which image patches a ViT trains on.

One `step` is one real optimisation step of a SimpleViT (`patchenv/vit.py`):

1. the observation describes batch t, computed from the ViT's current weights;
2. ``step(mask)`` trains on batch t with only the kept patches (dropped tokens are
   removed from the sequence, so the step is really cheaper), computes the reward, loads
   batch t+1 and returns its observation.

The patch embedding that built the observation of batch t is kept with its autograd
graph and reused by the training step, so the env does no forward work twice.

## Spaces (N patches, B batch size, D embedding width)
- ``selection="batch"`` (the paper): action ``MultiBinary(N)``, one mask for the batch.
  ``selection="image"``: action ``MultiBinary((B, N))``, one mask per image.
- ``obs_type="embeddings"`` (default): Box (B, N, D) patch embeddings + position
  embedding; ``"pooled"``: Box (N, D), their batch mean (small enough for SB3);
  ``"attention"``: Box (B, N), the paper's state (first attention block on all patches,
  averaged over D). float32 numpy, or torch tensors on the env's device with
  ``tensor_obs=True`` (a GPU agent then makes no host copy).

## Reward
``loss_weight * L(ref)/L(t) + patch_weight * (-|z - z*| / z*)`` (see
`patchenv/rewards.py`); ``alpha`` sets the weights to (alpha, 1 - alpha); ``reward_fn``
replaces the whole formula.

## Episodes
One epoch by default (``episode_steps``), ending with ``truncated=True``.
``reset(seed=s)`` starts a fresh training run (new ViT, optimiser and data order drawn
from s); ``reset()`` continues the same run where it stopped (the next epoch, by
default); ``reset(options={"new_run": True})`` forces a fresh run. The last incomplete
batch of an epoch is dropped. A non-finite loss or gradient ends the episode with
``terminated=True`` and ``info["diverged"] = True``; that update is not applied. So does
a finite update after which the next observation is not finite (weights that overflow,
e.g. from a huge lr); that observation is returned as zeros, inside its space.

## info (every step)
``loss, accuracy`` (batch, fraction), ``kept`` (mean patches kept per image),
``kept_per_image`` (per-image mode), ``tokens`` (real tokens the transformer processed),
``padding_tokens`` (filler slots from padding uneven per-image masks), ``epoch``,
``global_step``, ``loss_term``, ``patch_term``, ``diverged``. Wall-clock times are not in
``info`` (Gymnasium's checker compares the infos of two seeded steps): see
``train_time_s`` and ``last_step_time_s`` on the unwrapped env.

## Version history
- v0: initial release.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Optional, Union

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces

from patchenv import data as data_mod
from patchenv.atomic import atomic_torch_save  # noqa: F401  (also imported from here by agents)
from patchenv.rewards import RewardFn, StepStats, loss_term, patch_term, weights_from_alpha
from patchenv.vit import SimpleViT, init_weights

SELECTIONS = ("batch", "image")
OBS_TYPES = ("embeddings", "pooled", "attention")


def resolve_device(device: Union[str, torch.device]) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but CUDA is not available; use 'auto' or 'cpu'")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    return dev


class PatchSelectionEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(
        self,
        *,
        dataset: Union[str, data_mod.ImageData] = "cifar10",
        data_root: Optional[Union[str, os.PathLike]] = None,
        download: bool = False,
        batch_size: int = 128,
        patch_size: int = 4,
        dim: int = 128,
        depth: int = 6,
        heads: int = 16,
        dim_head: int = 64,
        mlp_dim: int = 512,
        lr: float = 1e-3,
        selection: str = "batch",
        obs_type: str = "embeddings",
        alpha: Optional[float] = None,
        loss_weight: float = 1.0,
        patch_weight: float = 20.0,
        n_patch_desired: int = 30,
        episode_steps: Optional[int] = None,
        device: str = "auto",
        reward_fn: Optional[RewardFn] = None,
        tensor_obs: bool = False,
        amp: Optional[str] = None,
        compile: bool = False,
        eval_batch_size: int = 500,
    ):
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
        if obs_type not in OBS_TYPES:
            raise ValueError(f"obs_type must be one of {OBS_TYPES}, got {obs_type!r}")
        if amp not in (None, "bf16"):
            raise ValueError(f"amp must be None or 'bf16', got {amp!r}")
        for name, value in (("batch_size", batch_size), ("patch_size", patch_size), ("dim", dim),
                            ("depth", depth), ("heads", heads), ("dim_head", dim_head), ("mlp_dim", mlp_dim)):
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"lr must be a positive number, got {lr!r}")
        self.device = resolve_device(device)

        images = dataset if isinstance(dataset, data_mod.ImageData) else data_mod.load_dataset(
            dataset, data_root=data_root, download=download)
        if images.image_size % patch_size != 0:
            raise ValueError(f"patch_size {patch_size} must divide the image size {images.image_size}")
        if len(images.train_y) < batch_size:
            raise ValueError(f"batch_size {batch_size} is larger than the training set ({len(images.train_y)} images)")
        self.dataset_name = images.name
        self.data = images.to(self.device)
        self._mean = torch.tensor(images.mean, device=self.device).view(1, -1, 1, 1)
        self._std = torch.tensor(images.std, device=self.device).view(1, -1, 1, 1)

        self.num_patches = (images.image_size // patch_size) ** 2
        n = self.num_patches
        if not (isinstance(n_patch_desired, (int, np.integer)) and 0 < n_patch_desired < n):
            raise ValueError(f"n_patch_desired must be an integer in [1, {n - 1}], got {n_patch_desired!r}")
        if alpha is not None:
            loss_weight, patch_weight = weights_from_alpha(alpha)
        self.vit_config = dict(image_size=images.image_size, patch_size=patch_size, num_classes=images.num_classes,
                               dim=dim, depth=depth, heads=heads, mlp_dim=mlp_dim, channels=images.channels,
                               dim_head=dim_head)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.selection = selection
        self.obs_type = obs_type
        self.alpha = alpha
        self.loss_weight = float(loss_weight)
        self.patch_weight = float(patch_weight)
        self.n_patch_desired = int(n_patch_desired)
        self.reward_fn = reward_fn
        self.tensor_obs = bool(tensor_obs)
        self.amp = amp
        self.compile = bool(compile)
        self.eval_batch_size = int(eval_batch_size)
        self.steps_per_epoch = len(images.train_y) // self.batch_size  # last partial batch dropped
        if episode_steps is not None and (not isinstance(episode_steps, (int, np.integer)) or episode_steps <= 0):
            raise ValueError(f"episode_steps must be a positive integer or None, got {episode_steps!r}")
        self.episode_steps = int(episode_steps) if episode_steps is not None else self.steps_per_epoch

        b, d = self.batch_size, dim
        self.action_space = spaces.MultiBinary(n) if selection == "batch" else spaces.MultiBinary((b, n))
        obs_shape = {"embeddings": (b, n, d), "pooled": (n, d), "attention": (b, n)}[obs_type]
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=obs_shape, dtype=np.float32)

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

    # -- Gymnasium API ----------------------------------------------------------------
    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        super().reset(seed=seed)
        options = options or {}
        if seed is not None or self.model is None or options.get("new_run", False):
            self._new_run()
        self._episode_step = 0
        self._episode_over = False
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
        with self._autocast():
            logits = self._forward_tokens(self._tokens, keep)
            loss = F.cross_entropy(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
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
        n_padding = self.batch_size * int(kept_per_image.max()) - n_tokens
        trained_epoch = self.epoch
        self.global_step += 1
        self._episode_step += 1
        if self._loss_ref is None and not diverged:
            self._loss_ref = loss_v
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

        kept = float(kept_per_image.mean())
        lt = loss_term(loss_v, self._loss_ref if self._loss_ref is not None else 1.0)
        pt = patch_term(kept, self.num_patches, self.n_patch_desired)
        stats = StepStats(loss=loss_v, loss_ref=self._loss_ref if self._loss_ref is not None else float("nan"),
                          accuracy=acc_v, kept=kept,
                          kept_per_image=kept_per_image if self.selection == "image" else None,
                          num_patches=self.num_patches, n_patch_desired=self.n_patch_desired,
                          loss_term=lt, patch_term=pt)
        if self.reward_fn is not None:
            reward = float(self.reward_fn(stats))
            if diverged and not math.isfinite(reward):
                reward = 0.0
        else:
            reward = self.loss_weight * lt + self.patch_weight * pt
        terminated = diverged
        truncated = (not terminated) and self._episode_step >= self.episode_steps
        self._episode_over = terminated or truncated
        info = {"loss": loss_v, "accuracy": acc_v, "kept": kept, "tokens": n_tokens, "padding_tokens": n_padding,
                "epoch": trained_epoch, "global_step": self.global_step, "loss_term": lt, "patch_term": pt,
                "diverged": diverged}
        if self.selection == "image":
            info["kept_per_image"] = kept_per_image.copy()
        return obs, float(reward), terminated, truncated, info

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

    # -- evaluation ---------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, split: str = "test", masks: Any = None) -> dict:
        """Loss and accuracy of the current ViT on a whole split, unaugmented.

        masks=None uses every patch (the paper's protocol). Otherwise a fixed mask (N,) or
        (B, N), or a callable ``masks(obs) -> mask`` given this env's observation of each
        evaluation batch (batches of ``batch_size``; an agent's ``act`` fits here).
        Changes no training state and draws no random numbers."""
        if self.model is None:
            raise gym.error.ResetNeeded("call reset() before evaluate(): there is no ViT yet")
        if split not in ("test", "train"):
            raise ValueError(f"split must be 'test' or 'train', got {split!r}")
        xs, ys = (self.data.test_x, self.data.test_y) if split == "test" else (self.data.train_x, self.data.train_y)
        model = self.model
        was_training = model.training
        model.eval()
        # With masks, batches have the training shape (B, ...) so an agent's act() fits;
        # the last partial batch is padded with copies of its first image, then cut off.
        bs = self.eval_batch_size if masks is None else self.batch_size
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
                    keep, _ = self._parse_action(mask)
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
            "format": "patchenv-checkpoint-v0",
            "config": self._config_fingerprint(),
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
        }
        atomic_torch_save(state, path)

    def load_checkpoint(self, path: Union[str, os.PathLike]):
        """Restore a run saved by `save_checkpoint`; no reset needed. Returns the pending
        observation. The env must be built with the same configuration."""
        path = Path(path)
        try:
            state = torch.load(path, map_location=self.device, weights_only=False)
        except Exception as e:
            raise ValueError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from None
        if not isinstance(state, dict) or state.get("format") != "patchenv-checkpoint-v0":
            raise ValueError(f"{path} is not a patchenv checkpoint")
        if state["config"] != self._config_fingerprint():
            raise ValueError(f"checkpoint {path} was saved by an env with another configuration: "
                             f"{state['config']} != {self._config_fingerprint()}")
        self._build_run(model_seed=None)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._np_random = np.random.Generator(np.random.PCG64())
        self._np_random.bit_generator.state = state["np_random"]
        self._np_random_seed = state["np_random_seed"]
        self._data_gen.set_state(state["data_gen"].cpu())  # generator states are CPU byte tensors
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
        self._prepare_observation()
        return self._observation()

    # -- internals ------------------------------------------------------------------------
    def _config_fingerprint(self) -> dict:
        return {"dataset": self.dataset_name, "batch_size": self.batch_size, "lr": self.lr, **self.vit_config}

    def _autocast(self):
        if self.amp == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return torch.autocast(device_type=self.device.type, enabled=False)

    def _build_run(self, model_seed: Optional[int]) -> None:
        # The constructor's default init draws from the global torch RNG; our weights come
        # from init_weights (or a checkpoint), so keep the user's global RNG untouched.
        with torch.random.fork_rng(devices=[]):
            self.model = SimpleViT(**self.vit_config)
        self.model = self.model.to(self.device)
        if model_seed is not None:
            init_weights(self.model, torch.Generator(self.device).manual_seed(model_seed))
        self.optimizer = make_optimizer(self.model, self.lr)
        self._forward_tokens = self.model.forward_tokens
        if self.compile:
            self._forward_tokens = torch.compile(self.model.forward_tokens, dynamic=True)
        self._data_gen = torch.Generator(self.device)

    def _new_run(self) -> None:
        model_seed, data_seed = (int(s) for s in self.np_random.integers(0, 2**62, size=2))
        self._build_run(model_seed)
        self._data_gen.manual_seed(data_seed)
        self.epoch, self.global_step, self._episode_step = 0, 0, 0
        self._loss_ref = None
        self.train_time_s = 0.0
        self.last_step_time_s = 0.0
        self._perm = torch.randperm(len(self.data.train_y), device=self.device, generator=self._data_gen)
        self._pos = 0
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
        # The embedding keeps its graph: the training step on this batch reuses it.
        self.model.train()
        with self._autocast():
            self._tokens = self.model.embed(self._batch_x)  # (B, N, D)
        self._obs = self._make_obs(self._tokens)

    @torch.no_grad()
    def _make_obs(self, tokens: torch.Tensor, for_agent: bool = False):
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

    def _parse_action(self, action):
        """Validate an action; return (keep for the ViT, patches kept per image (B,) numpy).

        Raises TypeError/ValueError naming what was expected; nothing is changed."""
        n, b = self.num_patches, self.batch_size
        expected = f"({n},)" if self.selection == "batch" else f"({b}, {n})"
        what = f"a 0/1 mask of shape {expected} (numpy array, list or torch tensor)"
        if action is None or isinstance(action, (str, bytes, dict)):
            raise TypeError(f"action must be {what}, got {type(action).__name__}")
        if isinstance(action, torch.Tensor):
            t = action.detach()
            if t.is_floating_point() and t.dtype not in (torch.float16, torch.float32, torch.float64):
                t = t.float()  # bfloat16 and float8 have no numpy dtype
            a = t.cpu().numpy()  # note: sync; the mask's length decides the sequence length
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


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    """The paper's optimiser, Adam with a constant lr. The fused kernel (CPU and CUDA) does
    the update in one pass over the weights: ~3x cheaper than the default on CPU here,
    which matters once dropping patches has made the rest of the step small."""
    return torch.optim.Adam(model.parameters(), lr=lr, fused=True)

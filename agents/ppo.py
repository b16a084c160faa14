"""PPO (Stable-Baselines3) choosing patches from the pooled observation.

Batch selection (``selection="batch"``, the default) reads the ``"pooled"`` observation
(N, D), the batch mean of the patch embeddings, and outputs ``MultiBinary(N)``. Per-image
selection (``selection="image"``) reads the paper's ``"attention"`` state (B, N), one row
per image, and outputs B * N bits through `patchenv.wrappers.FlattenMultiBinaryAction`
(SB3 rejects multi-dimensional MultiBinary spaces).

The features extractor works per item instead of flattening the observation into one
big MLP input (8k numbers for (64, 128)): a shared MLP maps each row of the observation
(a patch's D-vector, or an image's N-vector) to a few features, and the policy sees all
items' features side by side plus their mean. Patch identity survives because the
pooled embedding carries the position embedding.

``train(env, steps)`` runs about ``steps`` env steps (not a default 2048-step rollout):
the rollout length is ``min(n_steps, steps)`` split evenly, and one SB3 model carries on
across calls (``reset_num_timesteps=False``). An all-zero mask sampled by the policy is
replaced by "keep every patch" (`patchenv.wrappers.NonEmptyMask`), since the env rejects
a mask that keeps nothing. ``overhead_time_s`` grows by the time ``train`` spends outside
the env's ``step``/``reset`` and the step callback (rollouts' policy passes, PPO updates).

Saved as SB3's own zip (``.zip``, ``PPO.load`` reads it) with one more member,
``patchenv_agent.json``: ``{"format", "agent", "config", "state"}``, the state holding the
action shape and the counters (SB3's zip holds the policy, its optimiser and RNG-free
training state).
"""
from __future__ import annotations

import io
import json
import math
import os
import time
import warnings
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from agents.base import FORMAT, Agent, build_config
from agents.sb3_files import load_model, space_from_json, space_to_json
from patchenv.arrays import to_numpy
from patchenv.atomic import atomic_write_bytes
from patchenv.safe_load import TRUST_HINT
from patchenv.selector import ZIP_HEADER, Transition
from patchenv.wrappers import FlattenMultiBinaryAction, NonEmptyMask, ensure_nonempty


@dataclass
class PPOConfig:
    """PPO hyperparameters (SB3's names and defaults unless noted) and the extractor's size."""

    selection: str = "batch"
    """"batch": one mask per batch from the pooled (N, D) state; "image": one per image from (B, N)"""
    n_steps: int = 2048
    """longest rollout (env steps) between updates; a shorter `train(env, steps)` uses `steps`"""
    batch_size: int = 64
    """minibatch size of a PPO update (capped at the rollout length)"""
    n_epochs: int = 10
    """passes over each rollout"""
    learning_rate: float = 3e-4
    """Adam learning rate of the policy"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    clip_range: float = 0.2
    """PPO clipping of the probability ratio"""
    ent_coef: float = 0.0
    """entropy bonus coefficient"""
    item_hidden: int = 64
    """hidden width of the shared per-item MLP of the features extractor"""
    item_features: int = 8
    """features per item (patch or image) the extractor outputs"""
    net_arch: tuple = (64, 64)
    """hidden layers of the policy and value heads after the extractor"""
    device: str = "auto"
    """where the policy lives; "auto" = the env's device"""
    seed: int = 0
    """seeds the policy initialisation"""
    verbose: int = 0
    """SB3 verbosity"""

    def __post_init__(self):
        for name in ("n_steps", "batch_size", "n_epochs", "item_hidden", "item_features"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("learning_rate", "gamma", "gae_lambda", "clip_range", "ent_coef"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        try:
            self.net_arch = tuple(int(w) for w in self.net_arch)
        except (TypeError, ValueError):
            raise ValueError(f"net_arch must be a list of layer widths, got {self.net_arch!r}") from None


class PatchFeatures(BaseFeaturesExtractor):
    """(batch, items, F) -> a shared MLP per item -> (items * k + k,): every item's k
    features side by side, then their mean (a global summary)."""

    def __init__(self, observation_space, item_hidden: int = 64, item_features: int = 8):
        items, f = observation_space.shape[-2:]
        super().__init__(observation_space, features_dim=items * item_features + item_features)
        self.per_item = nn.Sequential(
            nn.Linear(f, item_hidden), nn.ReLU(), nn.Linear(item_hidden, item_features), nn.ReLU())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        h = self.per_item(obs)  # (batch, items, k)
        return torch.cat([h.flatten(1), h.mean(dim=1)], dim=1)


class PPOAgent(Agent):
    """Stable-Baselines3 PPO over the pooled observation (module docstring)."""

    name = "ppo"
    obs_types = {"batch": "pooled", "image": "attention"}
    save_suffix = ".zip"

    def __init__(self, **hyperparameters):
        self.hp = build_config(PPOConfig, hyperparameters)
        super().__init__(selection=self.hp.selection, seed=self.hp.seed)
        self.model = None
        self._env = None  # the env the SB3 model is bound to
        self._env_clock: Optional[_EnvClock] = None  # times the env inside the model's wrappers
        self._action_shape: Optional[tuple] = None
        # Whether the last `train` was stopped inside a rollout (Ctrl-C, a time budget):
        # SB3 drops a partly collected rollout, so a run resumed from here is not exact.
        self._rollout_cut = False

    @property
    def resume_caveat(self) -> Optional[str]:
        """Why a run resumed from this agent's checkpoint does not continue bit for bit
        (None when it does: checkpoints at epoch ends fall between whole rollouts)."""
        if not self._rollout_cut:
            return None
        return ("SB3 does not save a partly collected rollout, so the steps of the rollout the interruption cut "
                "are left out of the next PPO update: from here the policy and its masks differ from an "
                "uninterrupted run's (the ViT's training run, step and epoch counts continue exactly)")

    def config(self) -> dict:
        config = asdict(self.hp)
        config["net_arch"] = list(config["net_arch"])  # as JSON reads it back
        return config

    def stats(self) -> dict[str, float]:
        return {} if self.model is None else {"timesteps": self.model.num_timesteps}

    # -- acting ---------------------------------------------------------------------------
    def act(self, obs, explore: bool = False) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("ppo has no policy yet: call train(env, ...) or load(path) first")
        action, _ = self.model.predict(to_numpy(obs).astype(np.float32, copy=False), deterministic=not explore)
        return ensure_nonempty(np.asarray(action).reshape(self._action_shape).astype(np.int8))

    # -- learning -----------------------------------------------------------------------------
    def train(self, env, steps: int, callback: Optional[Callable[[Transition], Any]] = None) -> dict:
        """About ``steps`` env steps of PPO (rollouts of ``min(n_steps, steps)``, split evenly)."""
        steps = int(steps)
        if steps <= 0:
            return {"steps": 0, "reward": 0.0}
        start = time.perf_counter()
        self.setup_once(env)
        self._action_shape = tuple(env.action_space.shape)
        rollouts = math.ceil(steps / self.hp.n_steps)
        rollout_len = math.ceil(steps / rollouts)
        if self.model is None:
            self._create(env, rollout_len)
        elif env is not self._env:
            self.model.set_env(self._wrap(env))  # the first rollout resets it: reset() continues the run
            self._env = env
        self._set_rollout_length(rollout_len)
        counter = _StepCallback(callback)
        env_before = self._env_clock.seconds
        try:
            self.model.learn(total_timesteps=rollouts * rollout_len, callback=counter, reset_num_timesteps=False,
                             progress_bar=False)
        finally:
            self.synchronize()
            self.overhead_time_s += (time.perf_counter() - start - (self._env_clock.seconds - env_before)
                                     - counter.callback_s)
            self._rollout_cut = counter.stopped
        return {"steps": counter.steps, "reward": counter.reward}

    def synchronize(self) -> None:
        if self.model is not None and self.model.device.type == "cuda":
            torch.cuda.synchronize(self.model.device)  # note: sync point, for overhead_time_s

    def _wrap(self, env):
        self._env_clock = _EnvClock(env)
        wrapped = NonEmptyMask(self._env_clock)
        if self.selection == "image":
            wrapped = FlattenMultiBinaryAction(wrapped)
        return wrapped

    def _policy_kwargs(self) -> dict:
        return dict(features_extractor_class=PatchFeatures,
                    features_extractor_kwargs=dict(item_hidden=self.hp.item_hidden, item_features=self.hp.item_features),
                    net_arch=list(self.hp.net_arch))

    def _create(self, env, rollout_len: int) -> None:
        device = env.unwrapped.device if self.hp.device == "auto" else torch.device(self.hp.device)
        policy_kwargs = self._policy_kwargs()
        # No `seed=` for PPO: SB3 would reseed the global RNGs and pass the seed to the
        # env's first reset, which starts a fresh ViT run. Seed the initialisation only.
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*GPU.*MlpPolicy.*", category=UserWarning)
            # minibatch() balances the mini-batches; SB3 warns of any remainder at all
            warnings.filterwarnings("ignore", message=".*mini-batch size.*", category=UserWarning)
            torch.manual_seed(self.hp.seed)
            self.model = PPO(
                "MlpPolicy", self._wrap(env), n_steps=rollout_len, batch_size=minibatch(self.hp.batch_size, rollout_len),
                n_epochs=self.hp.n_epochs, learning_rate=self.hp.learning_rate, gamma=self.hp.gamma,
                gae_lambda=self.hp.gae_lambda, clip_range=self.hp.clip_range, ent_coef=self.hp.ent_coef,
                policy_kwargs=policy_kwargs, device=device, verbose=self.hp.verbose)
        self.model.action_space.seed(self.hp.seed)
        self._env = env

    def _set_rollout_length(self, rollout_len: int) -> None:
        m = self.model
        if m.n_steps == rollout_len:
            return
        m.n_steps = rollout_len
        m.batch_size = minibatch(self.hp.batch_size, rollout_len)
        m.rollout_buffer = m.rollout_buffer_class(
            rollout_len, m.observation_space, m.action_space, device=m.device, gamma=m.gamma,
            gae_lambda=m.gae_lambda, n_envs=m.n_envs, **m.rollout_buffer_kwargs)

    # -- persistence: SB3's zip plus a patchenv_agent.json member, written atomically ------
    def save(self, path: Union[str, os.PathLike]) -> None:
        if self.model is None:
            raise RuntimeError("ppo has nothing to save yet: call train(env, ...) first")
        buf = io.BytesIO()
        self.model.save(buf)
        header = {"format": FORMAT, "agent": self.name, "config": self.config(), "state": self.state_dict()}
        with zipfile.ZipFile(buf, "a") as archive:
            archive.writestr(ZIP_HEADER, json.dumps(header, indent=2))
        atomic_write_bytes(path, buf.getvalue())

    def read_file(self, path: Path, trust: bool = False) -> dict:
        """The patchenv header inside SB3's zip (name, config, counters)."""
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read(ZIP_HEADER))

    def restore(self, path: Path, state: dict, trust: bool = False) -> None:
        """SB3's model from the same zip (onto the config's device; "auto": CUDA when
        present), then the counters. Nothing of the zip is unpickled (`agents.sb3_files`):
        the spaces come from the header, the policy's settings from the config. A file
        without its spaces in the header (an older patchenv's) is read with SB3's own
        unpickling only if `trust`."""
        try:
            if "spaces" in state:
                spaces = {k: space_from_json(state["spaces"][k]) for k in ("observation", "action")}
                self.model = load_model(PPO, path, observation_space=spaces["observation"],
                                        action_space=spaces["action"], device=self.hp.device,
                                        known={"policy_kwargs": self._policy_kwargs(), "clip_range": self.hp.clip_range})
            elif trust:
                with open(path, "rb") as f:
                    self.model = PPO.load(f, device=self.hp.device)
            else:
                raise ValueError(f"it is from an older patchenv, whose PPO spaces SB3 reads by unpickling them; "
                                 f"{TRUST_HINT}")
        except Exception as e:
            raise ValueError(f"cannot read PPO agent file {path}: {type(e).__name__}: {e}") from None
        self.load_state_dict(state)

    def state_dict(self) -> dict:
        state = {**super().state_dict(), "action_shape": list(self._action_shape), "rollout_cut": self._rollout_cut}
        if self.model is not None:  # what `restore` gives SB3 instead of its pickled spaces
            state["spaces"] = {"observation": space_to_json(self.model.observation_space),
                               "action": space_to_json(self.model.action_space)}
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._action_shape = tuple(state["action_shape"])
        self._rollout_cut = bool(state.get("rollout_cut", False))


class _EnvClock(gym.Wrapper):
    """Adds the wall time of the env's ``step``/``reset`` to ``seconds`` (what PPO's
    ``overhead_time_s`` leaves out)."""

    def __init__(self, env):
        super().__init__(env)
        self.seconds = 0.0

    def step(self, action):
        t0 = time.perf_counter()
        try:
            return self.env.step(action)
        finally:
            self.seconds += time.perf_counter() - t0

    def reset(self, **kwargs):
        t0 = time.perf_counter()
        try:
            return self.env.reset(**kwargs)
        finally:
            self.seconds += time.perf_counter() - t0


class _StepCallback(BaseCallback):
    """Adapts SB3's callback protocol to ``callback(Transition)``; counts steps and reward."""

    def __init__(self, user_callback: Optional[Callable[[Transition], Any]]):
        super().__init__()
        self.user_callback = user_callback
        self.steps, self.reward = 0, 0.0
        self.callback_s = 0.0  # time in the user's callback: not the agent's work
        self.stopped = False  # the user's callback stopped the learning (SB3 then drops the rollout)

    def _on_step(self) -> bool:
        loc = self.locals
        info = dict(loc["infos"][0])
        reward, done = float(loc["rewards"][0]), bool(loc["dones"][0])
        truncated = done and bool(info.get("TimeLimit.truncated", False))
        next_obs = info.get("terminal_observation", loc["new_obs"][0]) if done else loc["new_obs"][0]
        self.steps += 1
        self.reward += reward
        if self.user_callback is None:
            return True
        transition = Transition(self.model._last_obs[0], loc["clipped_actions"][0], reward, next_obs,
                                done and not truncated, truncated, info)
        t0 = time.perf_counter()
        try:
            self.stopped = self.user_callback(transition) is False
            return not self.stopped
        finally:
            self.callback_s += time.perf_counter() - t0


def minibatch(batch_size: int, rollout_len: int) -> int:
    """Mini-batches of at most `batch_size` that split the rollout evenly: as few as fit,
    equal sizes, the last smaller by less than their number, so
    no mini-batch is truncated to a few steps (what SB3's warning is about)."""
    count = math.ceil(rollout_len / batch_size)
    return math.ceil(rollout_len / count)

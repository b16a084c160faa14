"""The agent interface every patch selector implements.

An agent names the observation and action format it wants (``obs_type``, ``selection``:
build the env with ``agent.env_kwargs()``), maps an observation to a keep-mask
(``act``), learns while the env trains the ViT (``train``) and saves/loads itself.

The default ``train`` is the plain Gymnasium loop with an ``update(transition)`` hook, so
a learning agent usually only writes ``act`` and ``update``. Agents that own their loop
(Stable-Baselines3) override ``train``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Union, runtime_checkable

import numpy as np
import torch

from patchenv.atomic import atomic_write_text  # noqa: F401  (re-exported: agents save with it)


@dataclass
class Transition:
    """One env step as the default loop hands it to ``Agent.update``."""

    obs: Any
    action: Any
    reward: float
    next_obs: Any
    terminated: bool
    truncated: bool
    info: dict


@runtime_checkable
class PatchSelector(Protocol):
    """What the benchmarks and the CLI rely on (structural: no need to subclass Agent)."""

    obs_type: str
    selection: str

    def act(self, obs, explore: bool = False): ...

    def train(self, env, steps: int, callback: Optional[Callable] = None) -> dict: ...

    def save(self, path: Union[str, os.PathLike]) -> None: ...

    def load(self, path: Union[str, os.PathLike]) -> "PatchSelector": ...


class Agent:
    """Base class with the default Gymnasium training loop.

    Subclasses set ``obs_type``/``selection`` and implement ``act``; learning agents
    implement ``update``. ``setup(env)`` is called once an env is known (by ``train``,
    and by the benchmarks before evaluating) to read N, B and the env's target count.
    """

    name: str = "agent"
    obs_type: str = "pooled"
    selection: str = "batch"
    #: file name suffix of what ``save`` writes (the CLI names its files with it)
    save_suffix: str = ".json"
    #: set by ``setup``
    num_patches: Optional[int] = None
    batch_size: Optional[int] = None
    n_patch_desired: Optional[int] = None

    def env_kwargs(self) -> dict:
        """Keyword arguments the env needs to produce what this agent consumes."""
        return {"obs_type": self.obs_type, "selection": self.selection}

    def setup(self, env) -> None:
        u = env.unwrapped
        if u.obs_type != self.obs_type or u.selection != self.selection:
            raise ValueError(
                f"agent {self.name!r} needs obs_type={self.obs_type!r}, selection={self.selection!r}; "
                f"the env has obs_type={u.obs_type!r}, selection={u.selection!r} (build it with agent.env_kwargs())"
            )
        self.num_patches, self.batch_size, self.n_patch_desired = u.num_patches, u.batch_size, u.n_patch_desired

    def act(self, obs, explore: bool = False):
        raise NotImplementedError

    def update(self, transition: Transition) -> None:
        """Learn from one transition; the default agent does not learn."""

    def train(self, env, steps: int, callback: Optional[Callable[[Transition], Any]] = None) -> dict:
        """Run ``steps`` env steps, acting with exploration and calling ``update``.

        ``env.reset()`` without a seed continues the env's training run (or starts one if
        there is none), so successive calls carry on where the last stopped. A callback
        returning False stops early. Returns simple totals."""
        self.setup(env)
        obs = self.prepare_obs(env.reset()[0])
        total_reward, done_steps = 0.0, 0
        for _ in range(int(steps)):
            action = self.act(obs, explore=True)
            self.before_step(env, obs, action)
            next_obs, reward, terminated, truncated, info = env.step(action)
            next_obs = self.prepare_obs(next_obs)
            transition = Transition(obs, action, reward, next_obs, terminated, truncated, info)
            self.update(transition)
            total_reward += reward
            done_steps += 1
            if callback is not None and callback(transition) is False:
                break
            obs = self.prepare_obs(env.reset()[0]) if (terminated or truncated) else next_obs
        return {"steps": done_steps, "reward": total_reward}

    # -- hooks of the default loop (no-ops by default) ------------------------------------
    def prepare_obs(self, obs):
        """Convert an observation as the env returns it into what ``act``/``update`` use
        (a GPU agent turns numpy into a device tensor here). Identity by default."""
        return obs

    def before_step(self, env, obs, action) -> None:
        """Called right before ``env.step(action)``: the last moment the env still holds
        batch t (the paper's DQN reads the images it is about to train on here)."""

    # -- persistence: config as JSON; learning agents extend with their weights ----------
    def config(self) -> dict:
        return {}

    def save(self, path: Union[str, os.PathLike]) -> None:
        atomic_write_text(path, json.dumps({"agent": self.name, "config": self.config()}, indent=2))

    def load(self, path: Union[str, os.PathLike]) -> "Agent":
        payload = json.loads(Path(path).read_text())
        if payload.get("agent") != self.name:
            raise ValueError(f"{path} holds agent {payload.get('agent')!r}, not {self.name!r}")
        for key, value in payload.get("config", {}).items():
            setattr(self, key, value)
        return self


def to_numpy(obs) -> np.ndarray:
    return obs.detach().cpu().numpy() if isinstance(obs, torch.Tensor) else np.asarray(obs)


def topk_mask(scores: np.ndarray, k: int) -> np.ndarray:
    """0/1 int8 mask keeping the k highest scores along the last axis (ties: lower index)."""
    scores = np.asarray(scores)
    k = int(min(max(k, 1), scores.shape[-1]))
    order = np.argsort(-scores, axis=-1, kind="stable")[..., :k]
    mask = np.zeros(scores.shape, dtype=np.int8)
    np.put_along_axis(mask, order, 1, axis=-1)
    return mask

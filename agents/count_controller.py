"""What the frozen keep-rate controllers (``keeprate``, ``evolved``) share: a trained policy
that, every ``decide_every`` env steps, reads the ``"progress"`` observation and picks how
many patches to keep (``selection="count"``), then holds that count. Only the decision
clock moves while it acts; the policy itself never learns inside the run it controls."""
from __future__ import annotations

import os
from dataclasses import asdict

import numpy as np

from agents.base import Agent


def check_frozen_policy_config(config, what: str) -> None:
    """The checks both controllers' configs make: ``decide_every`` a positive integer and
    ``policy`` None or a non-empty path (stored as str); `what` names the policy file's kind
    in the error."""
    every = config.decide_every
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every <= 0:
        raise ValueError(f"decide_every must be a positive integer, got {every!r}")
    if config.policy is not None:
        if not isinstance(config.policy, (str, os.PathLike)) or not str(config.policy):
            raise ValueError(f"policy must be a path to {what} policy file or None, got {config.policy!r}")
        config.policy = str(config.policy)


class CountController(Agent):
    """A frozen policy choosing a patch count every ``hp.decide_every`` steps. A subclass
    sets ``hp`` (a dataclass with ``decide_every`` and ``seed``), loads its policy at
    ``setup`` and implements `ready` and `decide`."""

    obs_types = {"count": "progress"}

    def __init__(self, *, selection: str = "count", hp):
        self.hp = hp
        super().__init__(selection=selection, seed=hp.seed)
        self._steps = 0  # env steps acted on in the run; a decision every decide_every
        self._action = 0

    def ready(self) -> bool:
        """Whether the policy is loaded (``setup`` loads it)."""
        raise NotImplementedError

    def decide(self, obs) -> int:
        """The patch count (1..N) the policy picks on the progress observation `obs`."""
        raise NotImplementedError

    def config(self) -> dict:
        return {"selection": self.selection, **asdict(self.hp)}

    def act(self, obs, explore: bool = False) -> int:
        if not self.ready():
            raise RuntimeError(f"{self.name} has no policy yet: call setup(env) (train or evaluate do) first")
        if self._steps % self.hp.decide_every == 0:
            self._action = self.decide(obs) - 1
        return self._action

    def update(self, transition) -> None:
        self._steps += 1  # the policy is frozen; only the decision clock moves

    def state_dict(self) -> dict:
        return {**super().state_dict(), "steps": self._steps, "action": self._action}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._steps, self._action = int(state.get("steps", 0)), int(state.get("action", 0))

    def stats(self) -> dict[str, float]:
        return {"kept": float(self._action + 1)}


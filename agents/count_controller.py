"""What the frozen keep-rate controllers (``keeprate``, ``evolved``) share: a trained policy
that, every ``decide_every`` env steps, reads the ``"progress"`` observation and picks how
many patches to keep (``selection="count"``), then holds that count. Only the decision
clock moves while it acts; the policy itself never learns inside the run it controls.

- `Held`: a choice made every k steps and held in between (the controllers' count, and the
  candidates' counts while ``agents.evolve`` scores them);
- `FrozenPolicyConfig`: the controllers' settings (which policy, how often it decides);
- `CountController`: the agent around a policy.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

import numpy as np

from agents.base import Agent


class Held:
    """A choice made on the first of every `every` steps and held for the rest: ``get``
    gives the held choice (calling `choose` on a step that starts a window), ``advance``
    counts a step done."""

    def __init__(self, every: int, choice: Any = None):
        self.every, self.steps, self.choice = every, 0, choice

    def get(self, choose: Callable[[], Any]) -> Any:
        if self.steps % self.every == 0:
            self.choice = choose()
        return self.choice

    def advance(self) -> None:
        self.steps += 1


@dataclass
class FrozenPolicyConfig:
    """A frozen controller's settings. A subclass sets the default ``objective`` (with its
    own documented line), the objectives it has a packaged policy for (`OBJECTIVES`), that
    policy's path (`packaged`) and what its policy files are called in errors (`KIND`)."""

    objective: str = ""
    """which packaged policy to use, named by what it was trained for"""
    policy: Optional[str] = None
    """a policy file; None = the packaged one for `objective`"""
    decide_every: int = 20
    """env steps between two decisions"""
    seed: int = 0
    """unused by the frozen policy (acting is deterministic); kept for the agent contract"""

    OBJECTIVES: ClassVar[tuple] = ()
    KIND: ClassVar[str] = "a"  # "a keeprate", "an evolved": the policy file's kind, in errors

    def __post_init__(self):
        every = self.decide_every
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every <= 0:
            raise ValueError(f"decide_every must be a positive integer, got {every!r}")
        if self.policy is not None:
            if not isinstance(self.policy, (str, os.PathLike)) or not str(self.policy):
                raise ValueError(f"policy must be a path to {self.KIND} policy file or None, got {self.policy!r}")
            self.policy = str(self.policy)
        if self.objective not in self.OBJECTIVES:
            raise ValueError(f"objective must be one of {self.OBJECTIVES}, got {self.objective!r}")

    def packaged(self, objective: str) -> Path:
        """The shipped policy trained for `objective`."""
        raise NotImplementedError

    @property
    def policy_path(self) -> Path:
        return Path(self.policy) if self.policy is not None else self.packaged(self.objective)


class CountController(Agent):
    """A frozen policy choosing a patch count every ``hp.decide_every`` steps. A subclass
    sets ``hp`` (a `FrozenPolicyConfig`), loads its policy at ``setup`` and implements
    `ready` and `decide`."""

    obs_types = {"count": "progress"}

    def __init__(self, *, selection: str = "count", hp: FrozenPolicyConfig):
        self.hp = hp
        super().__init__(selection=selection, seed=hp.seed)
        self._held = Held(hp.decide_every, choice=0)  # the action (count - 1), decided every decide_every steps

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
        return self._held.get(lambda: self.decide(obs) - 1)

    def update(self, transition) -> None:
        self._held.advance()  # the policy is frozen; only the decision clock moves

    def state_dict(self) -> dict:
        return {**super().state_dict(), "steps": self._held.steps, "action": self._held.choice}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._held.steps, self._held.choice = int(state.get("steps", 0)), int(state.get("action", 0))

    def stats(self) -> dict[str, float]:
        return {"kept": float(self._held.choice + 1)}

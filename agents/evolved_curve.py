"""evolved: the agent that plays an evolved keep-rate curve, a keep-rate controller whose few
parameters were evolved (CMA-ES, by `agents.evolve`) on proxy runs for the job it is judged
on, reaching plain training's accuracy with the least compute.

What it controls is what ``keeprate`` controls (``selection="count"``: how many patches, k
drawn at random per image by the env), from the same ``"progress"`` observation. What
differs is how it learned, and so what it learned. ``keeprate``'s DQN learned on digits,
whose target is easy with 8 patches, so it never learned to end on every patch; this one
is scored on Fashion-MNIST proxy runs (`agents.evolve`) exactly as the benchmark scores a
selector: the training FLOPs spent when its held-out accuracy first reaches the final
accuracy of an all-patch run on the same seed, within that run's FLOPs.

The policy, `KeepCurve`, is four numbers:

    fraction = floor + (1 - floor) * sigmoid(steepness * (budget_done - switch) + feedback * 10 * loss_trend / loss)

- ``budget_done`` (the run's share done) makes it a schedule: ``floor`` of the patches early,
  all of them late, switching around ``switch`` of the budget (past 1, as under an
  equal-FLOPs budget, it keeps every patch);
- ``loss_trend / loss`` (the training loss's fast average minus its slow one, relative;
  negative while the loss falls, 0 on a plateau) makes it a controller: with ``feedback``
  > 0 it keeps more patches once the loss stops falling at the current count.

It reads nothing from the probe, so it asks the env for one probe a run (the first
observation's) instead of one every 20 steps: a probe costs a forward pass over 128 held-out
images, FLOPs no schedule pays.

Apply it (the packaged policy is ``agents/policies/evolved-fmnist.json``)::

    python -m benchmarks.compare_selectors --suite fmnist --selectors all,grow,evolved

Train it again (the recipe of the packaged file is in its ``recipe``)::

    python -m agents.evolve --out agents/policies/evolved-fmnist.json

A second packaged policy, ``agents/policies/evolved-time-fmnist.json``, was evolved for the
benchmark's time to target instead of its FLOPs (``--objective time``: on a CPU a small
step costs far more than its share of the FLOPs, so it keeps about 9 patches, not 5)::

    python -m benchmarks.compare_selectors --suite fmnist --selectors all,evolved:objective=time
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from agents.base import NO_PROBE, build_config
from agents.count_controller import CountController, FrozenPolicyConfig
from patchenv.arrays import to_numpy
from patchenv.env.progress import PROGRESS_FEATURES

POLICIES = Path(__file__).with_name("policies")
PACKAGED = POLICIES / "evolved-fmnist.json"
# What agents.evolve scores a candidate by (its --objective), and the packaged policy evolved for each.
OBJECTIVES = ("flops", "time")
PACKAGED_FOR = {"flops": PACKAGED, "time": POLICIES / "evolved-time-fmnist.json"}
POLICY_FORMAT = "patchenv-evolved-v1"
PARAMETERS = ("floor_logit", "log_steepness", "switch", "feedback")
_BUDGET, _LOSS, _TREND = (PROGRESS_FEATURES.index(f) for f in ("budget_done", "loss", "loss_trend"))


@dataclass(frozen=True)
class KeepCurve:
    """The policy: the share of patches to keep as a function of the progress observation
    (module docstring). Built from the four evolved numbers, `PARAMETERS` in order."""

    floor_logit: float
    log_steepness: float
    switch: float
    feedback: float

    @classmethod
    def from_vector(cls, x: Sequence[float]) -> "KeepCurve":
        values = [float(v) for v in x]
        if len(values) != len(PARAMETERS) or not all(math.isfinite(v) for v in values):
            raise ValueError(f"a KeepCurve needs {len(PARAMETERS)} finite numbers ({', '.join(PARAMETERS)}), "
                             f"got {list(x)!r}")
        return cls(*values)

    def vector(self) -> list[float]:
        return [self.floor_logit, self.log_steepness, self.switch, self.feedback]

    @property
    def floor(self) -> float:
        return _sigmoid(self.floor_logit)

    def fraction(self, obs) -> float:
        obs = np.asarray(obs, dtype=np.float64)
        loss = obs[_LOSS]
        relative_trend = obs[_TREND] / loss if loss > 1e-6 else 0.0
        z = math.exp(self.log_steepness) * (obs[_BUDGET] - self.switch) + self.feedback * 10.0 * relative_trend
        return self.floor + (1.0 - self.floor) * _sigmoid(z)

    def count(self, obs, num_patches: int) -> int:
        """Patches to keep: the fraction of N, rounded, in [1, N]."""
        return max(1, min(num_patches, round(self.fraction(obs) * num_patches)))


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def read_policy(path: Union[str, os.PathLike]) -> tuple[KeepCurve, dict]:
    """(the policy, the file's whole record) from a policy file written by `write_policy`;
    a one-line ValueError naming the file otherwise."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
        if record.get("format") != POLICY_FORMAT:
            raise ValueError(f"format {record.get('format')!r}, expected {POLICY_FORMAT!r}")
        policy = KeepCurve.from_vector([record["parameters"][name] for name in PARAMETERS])
    except FileNotFoundError:
        raise ValueError(f"evolved policy {path} not found; evolve one with `python -m agents.evolve --out {path}`") \
            from None
    except Exception as e:
        raise ValueError(f"cannot read evolved policy {path}: {type(e).__name__}: {e}") from None
    return policy, record


def policy_record(policy: KeepCurve, **extra) -> dict:
    """What `write_policy` saves: the format, the parameters by name, and `extra` (the recipe, the history)."""
    return {"format": POLICY_FORMAT, "parameters": dict(zip(PARAMETERS, policy.vector())), **extra}


@dataclass
class EvolvedConfig(FrozenPolicyConfig):
    objective: str = "flops"
    """which packaged policy to use: "flops" (evolved for FLOPs to target, agents/policies/evolved-fmnist.json) or "time" (for time to target, agents/policies/evolved-time-fmnist.json)"""

    OBJECTIVES = OBJECTIVES
    KIND = "an evolved"

    def packaged(self, objective: str) -> Path:
        return PACKAGED_FOR[objective]


class Evolved(CountController):
    """A frozen `KeepCurve` choosing how many patches to keep (module docstring)."""

    name = "evolved"

    def __init__(self, *, selection: str = "count", curve: Optional[KeepCurve] = None, **hyperparameters):
        super().__init__(selection=selection, hp=build_config(EvolvedConfig, hyperparameters))
        self.curve = curve  # given (agents.evolve scores candidates this way) or read at setup

    def env_kwargs(self) -> dict:
        return {**super().env_kwargs(), "probe_every": NO_PROBE}

    def setup(self, env) -> None:
        super().setup(env)
        if self.curve is None:
            self.curve, _ = read_policy(self.hp.policy_path)

    def ready(self) -> bool:
        return self.curve is not None

    def decide(self, obs) -> int:
        return self.curve.count(to_numpy(obs), self.num_patches)

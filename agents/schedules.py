"""Training-free token-count schedules: keep k random patches per step (as ``random``), with
k following the run's progress instead of staying fixed.

- ``grow``: k grows linearly from ``k0`` to ``k_end`` (default N, every patch) over the
  first ``fraction`` of the run's budget, then stays at ``k_end`` (in the spirit of Token
  Expansion and patch-sampling schedules: cheap early steps, full ones at the end).
  ``start`` holds ``k0`` until that share of the budget and ramps between ``start`` and
  ``fraction`` (``grow:k0=5:start=1:fraction=1.28`` is, linearised, the curve ``evolved``
  learned: its sigmoid's slope at its midpoint, 1.14 of the budget; a
  ``fraction`` above 1 ends past the planned epochs, which only a run trained longer
  than ``budget_epochs`` reaches, e.g. under ``--budget equal-flops``).
- ``cosine``: the same endpoints along a half cosine, slow at both ends.

The run's length comes from the env (``env.unwrapped.total_steps``, set from
``budget_epochs``, which both front ends fill from ``--epochs``); progress is the env's
``global_step`` over it, so a resumed run continues on the same schedule. Evaluated at
the end of the run (``evaluate(masks=agent.act)``) a schedule keeps ``k_end``.
"""
from __future__ import annotations

import math
from typing import Optional

from agents.base import check_k, check_k_fits
from agents.baselines import RandomPatches


class _Schedule(RandomPatches):
    def __init__(self, *, k0: int = 16, k_end: Optional[int] = None, fraction: float = 0.75, start: float = 0.0,
                 selection: str = "batch", seed: int = 0):
        super().__init__(k=None, selection=selection, seed=seed)
        self.k0 = check_k(k0)
        if self.k0 is None:
            raise ValueError("k0 must be an integer in [1, N], got None")
        self.k_end = check_k(k_end)
        if self.k_end is not None and self.k_end < self.k0:
            raise ValueError(f"k_end must be at least k0={self.k0}, got {self.k_end}")
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < math.inf:
            raise ValueError(f"fraction must be a positive number (1: the planned run's end), got {fraction!r}")
        if isinstance(start, bool) or not isinstance(start, (int, float)) or not 0 <= start < fraction:
            raise ValueError(f"start must be a number in [0, fraction={fraction}), got {start!r}")
        self.fraction, self.start = float(fraction), float(start)
        self._env = None

    def setup(self, env) -> None:
        super().setup(env)
        for k in (self.k0, self.k_end):
            check_k_fits(self.name, k, self.num_patches)
        if getattr(env.unwrapped, "total_steps", None) is None:
            raise ValueError(f"agent {self.name!r} needs the run's length: build the env with budget_epochs "
                             "(patchenv train and compare_selectors set it from --epochs)")
        self._env = env.unwrapped

    def progress(self) -> float:
        """Share of the schedule done, in [0, 1]: 0 until ``start`` of the env's budget (in
        steps), 1 from ``fraction`` of it, linear between."""
        total = self._env.total_steps
        ramp = max((self.fraction - self.start) * total, 1.0)
        return min(1.0, max(0.0, (self._env.global_step - self.start * total) / ramp))

    def shape(self, p: float) -> float:
        raise NotImplementedError

    def current_k(self, n: int) -> int:
        if self._env is None:
            raise RuntimeError(f"agent {self.name!r}: call setup(env) before act()")
        k_end = self.k_end or n
        return int(round(self.k0 + (k_end - self.k0) * self.shape(self.progress())))

    def config(self) -> dict:
        return {"k0": self.k0, "k_end": self.k_end, "fraction": self.fraction, "start": self.start,
                "selection": self.selection, "seed": self.seed}


class Grow(_Schedule):
    """k from ``k0`` to ``k_end`` (default N) linearly over ``fraction`` of the run, then ``k_end``."""

    name = "grow"

    def shape(self, p: float) -> float:
        return p


class CosineKeep(_Schedule):
    """k from ``k0`` to ``k_end`` (default N) along a half cosine over ``fraction`` of the run."""

    name = "cosine"

    def shape(self, p: float) -> float:
        return (1 - math.cos(math.pi * p)) / 2

"""Training-free token-count schedules: keep k random patches per step (as ``random``), with
k following the run's progress instead of staying fixed.

- ``grow``: k grows linearly from ``k0`` to ``k_end`` (default N, every patch) over the
  first ``fraction`` of the run's budget, then stays at ``k_end`` (in the spirit of Token
  Expansion and patch-sampling schedules: cheap early steps, full ones at the end).
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
    def __init__(self, *, k0: int = 16, k_end: Optional[int] = None, fraction: float = 0.75,
                 selection: str = "batch", seed: int = 0):
        super().__init__(k=None, selection=selection, seed=seed)
        self.k0 = check_k(k0)
        if self.k0 is None:
            raise ValueError("k0 must be an integer in [1, N], got None")
        self.k_end = check_k(k_end)
        if self.k_end is not None and self.k_end < self.k0:
            raise ValueError(f"k_end must be at least k0={self.k0}, got {self.k_end}")
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
            raise ValueError(f"fraction must be a number in (0, 1], got {fraction!r}")
        self.fraction = float(fraction)
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
        """Share of the schedule done, in [0, 1]: the env's steps over ``fraction`` of its budget."""
        return min(1.0, self._env.global_step / max(self.fraction * self._env.total_steps, 1.0))

    def shape(self, p: float) -> float:
        raise NotImplementedError

    def current_k(self, n: int) -> int:
        if self._env is None:
            raise RuntimeError(f"agent {self.name!r}: call setup(env) before act()")
        k_end = self.k_end or n
        return int(round(self.k0 + (k_end - self.k0) * self.shape(self.progress())))

    def config(self) -> dict:
        return {"k0": self.k0, "k_end": self.k_end, "fraction": self.fraction, "selection": self.selection,
                "seed": self.seed}


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

"""RunCounters: the counters of E training runs as arrays with a leading E dimension (the
epoch, the global and the episode step, and the reward's reference loss L(ref)), updated
for every training run of a step at once. A single env's run is row 0 of its own; a
population's runs are the rows of one, so the rule that counts a step is written once."""
from __future__ import annotations

import numpy as np


class RunCounters:
    """Counters of `num_runs` runs (module docstring); ``loss_ref`` is NaN until a run has one."""

    def __init__(self, num_runs: int):
        self.epoch = np.zeros(num_runs, dtype=np.int64)
        self.global_step = np.zeros(num_runs, dtype=np.int64)
        self.episode_step = np.zeros(num_runs, dtype=np.int64)
        self.loss_ref = np.full(num_runs, np.nan)

    def after_updates(self, rows: np.ndarray, losses: np.ndarray, diverged: np.ndarray,
                      loss_ref_step: int) -> np.ndarray:
        """Count one training step of each run in `rows`, whose losses and divergence are
        `losses` and `diverged` (arrays over `rows`); returns the epoch each step trained
        in. L(ref) is the loss of a run's step `loss_ref_step` (counted from 1), or of its
        first finite step after it."""
        trained_epoch = self.epoch[rows].copy()
        self.global_step[rows] += 1
        self.episode_step[rows] += 1
        unset = np.isnan(self.loss_ref[rows]) & ~diverged & (self.global_step[rows] >= loss_ref_step)
        self.loss_ref[rows[unset]] = losses[unset]
        return trained_epoch


class CounterRow:
    """A run's counter as an attribute (``TrainingRun.epoch`` ...): row ``run.row`` of
    ``run.counters``' array of that name, read as a Python int."""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, run, owner=None):
        if run is None:
            return self
        return int(getattr(run.counters, self.name)[run.row])

    def __set__(self, run, value: int) -> None:
        getattr(run.counters, self.name)[run.row] = value

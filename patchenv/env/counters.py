"""RunCounters: the counters of E training runs as arrays with a leading E dimension (the
epoch, the global and the episode step, and the reward's reference loss L(ref)), updated
for every training run of a step at once. A single env's run is row 0 of its own; a
population's runs are the rows of one, so the rule that counts a step is written once.

The counts are the host's (it decides them); L(ref), a loss the device measured, is a
float64 tensor on the device, set there without the host waiting for it."""
from __future__ import annotations

import numpy as np
import torch

from patchenv.arrays import rows_of, set_rows, to_device


class RunCounters:
    """Counters of `num_runs` runs (module docstring); ``loss_ref`` is NaN until a run has
    one (a tensor on `device`)."""

    def __init__(self, num_runs: int, device: torch.device = torch.device("cpu")):
        self.epoch = np.zeros(num_runs, dtype=np.int64)
        self.global_step = np.zeros(num_runs, dtype=np.int64)
        self.episode_step = np.zeros(num_runs, dtype=np.int64)
        self.loss_ref = torch.full((num_runs,), float("nan"), dtype=torch.float64, device=device)

    def after_updates(self, rows: np.ndarray, losses: torch.Tensor, diverged: torch.Tensor,
                      loss_ref_step: int) -> np.ndarray:
        """Count one training step of each run in `rows`, whose losses and divergence are
        `losses` and `diverged` (float64 and bool tensors over `rows`, on the device);
        returns the epoch each step trained in. L(ref) is the loss of a run's step
        `loss_ref_step` (counted from 1), or of its first finite step after it."""
        trained_epoch = self.epoch[rows].copy()
        self.global_step[rows] += 1
        self.episode_step[rows] += 1
        old = rows_of(self.loss_ref, rows)
        due = to_device(self.global_step[rows] >= loss_ref_step, old.device)
        set_rows(self.loss_ref, rows, torch.where(torch.isnan(old) & ~diverged & due, losses, old))
        return trained_epoch

    def loss_refs(self, rows: np.ndarray) -> torch.Tensor:
        """L(ref) of the runs in `rows` (NaN: not set yet), on the device."""
        return rows_of(self.loss_ref, rows)


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

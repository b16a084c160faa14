"""How far training has got: the ``"progress"`` observation and the ``"progress"`` reward.

The keep-rate control problem (``selection="count"``: the agent picks how many patches to
keep, not which) needs to see the run, not the images: in the spirit of DACBench's
learning-rate control, the observation is a short vector of training statistics, and the
reward is what a user of the run wants, held-out improvement per unit of compute.

`ProgressTracker` keeps the statistics on the host (floats the step already has there, so
no extra device sync) and the probe's results. The probe is a fixed batch of held-out
images (``probe_size``, from the validation split) evaluated with every patch every
``probe_every`` training steps; its forward FLOPs are part of the run's compute
(``info["flops"]`` includes them, ``info["probe_flops"]`` says how much).

The observation, `PROGRESS_FEATURES` in order (float32):

- ``budget_done``: training steps done over the run's planned steps (``total_steps``,
  from ``budget_epochs``); without a budget, the share of the current episode done;
- ``epoch_done``: the share of the current epoch done;
- ``loss``: the training loss, an exponential moving average over ~10 steps;
- ``loss_trend``: that average minus a slower one (~100 steps): negative while the loss
  falls;
- ``probe_loss``, ``probe_accuracy``: the last probe's (with every patch);
- ``probe_accuracy_change``: its change since the probe before;
- ``kept_so_far``: the share of patches kept per image, averaged over the run's steps;
- ``last_kept``: the share the last step kept.

The progress reward (``reward="progress"``): 0 on a step without a probe; on a probe step
(every ``probe_every``-th step of the run),

    (L_probe(previous) - L_probe(now)) / (C / C_all)

the probe's loss decrease divided by the compute spent since the previous probe, C
(training FLOPs plus the probe's), in units of C_all, what the same steps would have cost
with every patch (plus the same probe). Keeping every patch, the reward is the loss
decrease itself; the same decrease for half the compute earns twice as much. The loss,
not the accuracy, because on a fixed probe batch it moves smoothly where accuracy moves
in steps of 1 / probe_size. The return of a run is then the sum, over probe intervals,
of held-out improvement per unit of compute.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

PROGRESS_FEATURES = ("budget_done", "epoch_done", "loss", "loss_trend", "probe_loss", "probe_accuracy",
                     "probe_accuracy_change", "kept_so_far", "last_kept")

_FAST, _SLOW = 0.9, 0.99  # EMA decays: ~10 and ~100 steps


class ProgressTracker:
    """Statistics of one training run for the progress observation and reward."""

    def __init__(self, num_patches: int):
        self.num_patches = num_patches
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        self.loss_fast: Optional[float] = None
        self.loss_slow: Optional[float] = None
        self.kept_sum = 0.0  # patches kept per image, summed over steps
        self.last_kept = 1.0
        self.probe_loss: Optional[float] = None
        self.probe_accuracy: Optional[float] = None
        self.probe_accuracy_change = 0.0
        self.flops = 0  # compute since the last probe, and what every patch would have cost
        self.flops_all = 0

    def after_step(self, loss: float, kept: float, flops: int, flops_all: int) -> None:
        """Record a training step: its loss, patches kept per image, and its FLOPs with the
        patches kept and with every patch."""
        self.steps += 1
        if math.isfinite(loss):
            self.loss_fast = loss if self.loss_fast is None else _FAST * self.loss_fast + (1 - _FAST) * loss
            self.loss_slow = loss if self.loss_slow is None else _SLOW * self.loss_slow + (1 - _SLOW) * loss
        self.kept_sum += kept
        self.last_kept = kept / self.num_patches
        self.flops += flops
        self.flops_all += flops_all

    def after_probe(self, loss: float, accuracy: float, probe_flops: int) -> float:
        """Record a probe evaluation; returns the progress reward of the interval it closes
        (0 for the first probe of a run, which has no interval before it)."""
        reward = 0.0
        if self.probe_loss is not None:
            spent, spent_all = self.flops + probe_flops, self.flops_all + probe_flops
            if math.isfinite(loss) and math.isfinite(self.probe_loss) and spent > 0:
                reward = (self.probe_loss - loss) / (spent / spent_all)
            self.probe_accuracy_change = accuracy - self.probe_accuracy
        self.probe_loss, self.probe_accuracy = loss, accuracy
        self.flops = self.flops_all = 0
        return reward

    def observation(self, budget_done: float, epoch_done: float) -> np.ndarray:
        """The `PROGRESS_FEATURES` vector (float32), finite; statistics not measured yet
        are 0."""
        loss = self.loss_fast if self.loss_fast is not None else 0.0
        trend = (self.loss_fast - self.loss_slow) if self.loss_slow is not None else 0.0
        probe_loss = self.probe_loss if self.probe_loss is not None and math.isfinite(self.probe_loss) else 0.0
        values = [budget_done, epoch_done, loss, trend, probe_loss, self.probe_accuracy or 0.0,
                  self.probe_accuracy_change, self.kept_sum / (self.steps * self.num_patches) if self.steps else 1.0,
                  self.last_kept]
        return np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)

    def state_dict(self) -> dict:
        return dict(vars(self))

    def load_state_dict(self, state: dict) -> None:
        missing = set(vars(self)) - set(state)
        if missing:
            raise KeyError(f"progress state lacks {sorted(missing)}")
        for name in vars(self):
            setattr(self, name, state[name])

"""How far training has got: the ``"progress"`` observation and the ``"progress"`` reward.

The keep-rate control problem (``selection="count"``: the agent picks how many patches to
keep, not which) needs to see the run, not the images: in the spirit of DACBench's
learning-rate control, the observation is a short vector of training statistics, and the
reward is what a user of the run wants, held-out improvement per unit of compute.

`ProgressTracker` keeps the statistics of E runs as arrays: the training loss's averages
on the device (the step's loss stays there: updating them waits for nothing), the counts,
the patches kept and the probe's results on the host (the probe step reads its result
once, `TrainingRun.run_probe`). The probe is a fixed batch of held-out
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
from typing import Sequence

import numpy as np
import torch

from patchenv.arrays import rows_of, set_rows, to_device

PROGRESS_FEATURES = ("budget_done", "epoch_done", "loss", "loss_trend", "probe_loss", "probe_accuracy",
                     "probe_accuracy_change", "kept_so_far", "last_kept")

_FAST, _SLOW = 0.9, 0.99  # EMA decays: ~10 and ~100 steps


# The statistics a run's checkpoint holds, in this order (see `ProgressTracker.state_dict`).
_STATE_KEYS = ("num_patches", "steps", "loss_fast", "loss_slow", "kept_sum", "last_kept", "probe_loss",
               "probe_accuracy", "probe_accuracy_change", "flops", "flops_all")


class ProgressTracker:
    """Statistics of `num_runs` training runs for the progress observation and reward, as
    arrays with a leading E dimension (a single env's run is row 0 of its own; a
    population's runs are the rows of one, and a step records all its runs at once).
    Not measured yet: NaN (``loss_fast``, ``loss_slow``), or ``probed`` False (the probe's)."""

    def __init__(self, num_patches: int, num_runs: int = 1, device: torch.device = torch.device("cpu")):
        self.num_patches = num_patches
        self.steps = np.zeros(num_runs, dtype=np.int64)
        # float64 on the device, as the host's arithmetic was: the same numbers.
        self.loss_fast = torch.full((num_runs,), float("nan"), dtype=torch.float64, device=device)
        self.loss_slow = torch.full((num_runs,), float("nan"), dtype=torch.float64, device=device)
        self.kept_sum = np.zeros(num_runs)  # patches kept per image, summed over steps
        self.last_kept = np.ones(num_runs)
        self.probed = np.zeros(num_runs, dtype=bool)  # a probe has run (its loss may be non-finite)
        self.probe_loss = np.zeros(num_runs)
        self.probe_accuracy = np.zeros(num_runs)
        self.probe_accuracy_change = np.zeros(num_runs)
        # Compute since the last probe, and what every patch would have cost (Python ints:
        # exact, whatever their size, as the reward's ratio of the two needs).
        self.flops = [0] * num_runs
        self.flops_all = [0] * num_runs

    def reset(self, row: int) -> None:
        """Run `row` starts afresh: nothing measured."""
        self.steps[row], self.loss_fast[row], self.loss_slow[row] = 0, float("nan"), float("nan")
        self.kept_sum[row], self.last_kept[row] = 0.0, 1.0
        self.probed[row], self.probe_loss[row], self.probe_accuracy[row] = False, 0.0, 0.0
        self.probe_accuracy_change[row] = 0.0
        self.flops[row] = self.flops_all[row] = 0

    def after_steps(self, rows: np.ndarray, losses: torch.Tensor, kept: np.ndarray, flops: Sequence[int],
                    flops_all: Sequence[int]) -> None:
        """Record a training step of each run in `rows`: its loss (float64 on the device),
        patches kept per image, and its FLOPs with the patches kept and with every patch
        (arrays over `rows`)."""
        self.steps[rows] += 1
        finite = torch.isfinite(losses)
        for ema, decay in ((self.loss_fast, _FAST), (self.loss_slow, _SLOW)):
            old = rows_of(ema, rows)
            set_rows(ema, rows, torch.where(finite, torch.where(torch.isnan(old), losses,
                                                                decay * old + (1 - decay) * losses), old))
        self.kept_sum[rows] += kept
        self.last_kept[rows] = kept / self.num_patches
        for row, f, f_all in zip(rows.tolist(), flops, flops_all):
            self.flops[row] += int(f)
            self.flops_all[row] += int(f_all)

    def after_probe(self, row: int, loss: float, accuracy: float, probe_flops: int) -> float:
        """Record a probe evaluation of run `row`; returns the progress reward of the
        interval it closes (0 for the first probe of a run, which has no interval before it)."""
        reward = 0.0
        if self.probed[row]:
            spent, spent_all = self.flops[row] + probe_flops, self.flops_all[row] + probe_flops
            last = float(self.probe_loss[row])
            if math.isfinite(loss) and math.isfinite(last) and spent > 0:
                reward = (last - loss) / (spent / spent_all)
            self.probe_accuracy_change[row] = accuracy - float(self.probe_accuracy[row])
        self.probed[row], self.probe_loss[row], self.probe_accuracy[row] = True, loss, accuracy
        self.flops[row] = self.flops_all[row] = 0
        return reward

    def observations(self, rows: np.ndarray, budget_done: np.ndarray, epoch_done: np.ndarray) -> torch.Tensor:
        """The `PROGRESS_FEATURES` vectors (len(rows), 9) float32 of the runs in `rows`, on
        the device, given their budget and epoch done (arrays over `rows`); finite,
        statistics not measured yet 0."""
        # NaN (not measured yet) and non-finite values become 0 in the last line; a run
        # never probed holds 0 as its probe's loss, accuracy and change.
        steps = self.steps[rows]
        values = np.zeros((len(rows), len(PROGRESS_FEATURES)))
        values[:, 0], values[:, 1] = budget_done, epoch_done
        values[:, 4], values[:, 5] = self.probe_loss[rows], self.probe_accuracy[rows]
        values[:, 6] = self.probe_accuracy_change[rows]
        values[:, 7] = np.where(steps > 0, self.kept_sum[rows] / np.maximum(steps * self.num_patches, 1), 1.0)
        values[:, 8] = self.last_kept[rows]
        full = to_device(values, self.loss_fast.device)  # the host's columns; the losses' below
        fast = rows_of(self.loss_fast, rows)
        full[:, 2], full[:, 3] = fast, fast - rows_of(self.loss_slow, rows)
        return torch.nan_to_num(full.float(), nan=0.0, posinf=0.0, neginf=0.0)

    def observation(self, row: int, budget_done: float, epoch_done: float) -> torch.Tensor:
        """Run `row`'s `PROGRESS_FEATURES` vector (float32, on the device): `observations` of one run."""
        return self.observations(np.array([row]), np.array([budget_done]), np.array([epoch_done]))[0]

    def state_dict(self, row: int) -> dict:
        """Run `row`'s statistics as plain Python values (None: not measured yet; note: the
        losses' averages are read from the device)."""
        probed = bool(self.probed[row])
        unset = lambda x: None if math.isnan(x) else x  # noqa: E731
        return {"num_patches": self.num_patches, "steps": int(self.steps[row]),
                "loss_fast": unset(float(self.loss_fast[row])), "loss_slow": unset(float(self.loss_slow[row])),
                "kept_sum": float(self.kept_sum[row]), "last_kept": float(self.last_kept[row]),
                "probe_loss": float(self.probe_loss[row]) if probed else None,
                "probe_accuracy": float(self.probe_accuracy[row]) if probed else None,
                "probe_accuracy_change": float(self.probe_accuracy_change[row]),
                "flops": self.flops[row], "flops_all": self.flops_all[row]}

    @staticmethod
    def check_state(state: dict) -> dict:
        """`state` (a `state_dict`), checked before anything changes: a KeyError names what
        it lacks."""
        missing = set(_STATE_KEYS) - set(state)
        if missing:
            raise KeyError(f"progress state lacks {sorted(missing)}")
        return state

    def load_state_dict(self, row: int, state: dict) -> None:
        """Run `row`'s statistics from a checked `state` (`check_state`)."""
        nan = lambda x: float("nan") if x is None else x  # noqa: E731
        self.steps[row] = state["steps"]
        self.loss_fast[row], self.loss_slow[row] = nan(state["loss_fast"]), nan(state["loss_slow"])
        self.kept_sum[row], self.last_kept[row] = state["kept_sum"], state["last_kept"]
        self.probed[row] = state["probe_loss"] is not None
        self.probe_loss[row] = 0.0 if state["probe_loss"] is None else state["probe_loss"]
        self.probe_accuracy[row] = 0.0 if state["probe_accuracy"] is None else state["probe_accuracy"]
        self.probe_accuracy_change[row] = state["probe_accuracy_change"]
        self.flops[row], self.flops_all[row] = int(state["flops"]), int(state["flops_all"])

"""Paired ratios of timings (`patchenv.timing.DeviceTimer`) and how many repeats fit a budget."""
from __future__ import annotations

import numpy as np

from benchmarks.device.config import ReportConfig


def paired_stats(num: list[float], den: list[float]) -> dict:
    """Median and quartiles of per-repeat ratios (load that comes and goes cancels out)."""
    r = np.asarray(num) / np.asarray(den)
    return {"ratio": float(np.median(r)), "ratio_p25": float(np.percentile(r, 25)),
            "ratio_p75": float(np.percentile(r, 75))}


def repeats_for(cfg: ReportConfig, seconds_per_repeat: float, budget_s: float) -> int:
    fit = int(budget_s / max(seconds_per_repeat, 1e-9))
    return int(min(max(fit, cfg.min_repeats), cfg.max_repeats))

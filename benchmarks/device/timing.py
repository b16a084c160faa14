"""Timing on the device's own clock, paired ratios, and how many repeats fit a budget."""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch

from benchmarks.device.config import ReportConfig


class Timer:
    """Seconds per call of `fn` over `inner` back-to-back calls: CUDA events on the GPU
    (the device's own clock, after a sync so the start event is not queued behind earlier
    work), perf_counter on the CPU."""

    def __init__(self, device: torch.device):
        self.device = device

    def __call__(self, fn: Callable[[], Any], inner: int = 1) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # note: sync (outside the timed work)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(inner):
                fn()
            end.record()
            end.synchronize()  # note: sync
            return start.elapsed_time(end) / 1e3 / inner
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        return (time.perf_counter() - t0) / inner


def paired_stats(num: list[float], den: list[float]) -> dict:
    """Median and quartiles of per-repeat ratios (load that comes and goes cancels out)."""
    r = np.asarray(num) / np.asarray(den)
    return {"ratio": float(np.median(r)), "ratio_p25": float(np.percentile(r, 25)),
            "ratio_p75": float(np.percentile(r, 75))}


def repeats_for(cfg: ReportConfig, seconds_per_repeat: float, budget_s: float) -> int:
    fit = int(budget_s / max(seconds_per_repeat, 1e-9))
    return int(min(max(fit, cfg.min_repeats), cfg.max_repeats))

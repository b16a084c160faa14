"""Pieces the benchmarks share: list parsing, CSV and figure files, timing, statistics.

The ``meta`` block every result file carries lives in `patchenv.run.meta`; JSON results are
written with `patchenv.atomic.atomic_write_json`.
"""
from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import numpy as np
import torch

from patchenv.atomic import atomic_write, atomic_write_text, jsonable
from patchenv.timing import DeviceTimer


def parse_list(text: str, kind: Callable = str) -> list:
    """'a,b, c' -> ['a', 'b', 'c'] (converted with `kind`); empty items are dropped."""
    return [kind(item.strip()) for item in str(text).split(",") if item.strip()]


# -- files ----------------------------------------------------------------------------------
def write_csv(path: Union[str, os.PathLike], rows: Sequence[dict], fields: Sequence[str]) -> None:
    """One row per dict, columns `fields`; None is written as an empty cell."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if jsonable(row.get(k)) is None else jsonable(row.get(k))) for k in fields})
    atomic_write_text(path, buf.getvalue())


def save_figure(fig, path: Union[str, os.PathLike]) -> None:
    """fig.savefig through a temp file and a rename."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=120, bbox_inches="tight"))


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed), or a clear error."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover
        raise SystemExit("the plots need matplotlib: pip install matplotlib") from e
    return plt


# -- timing and statistics ----------------------------------------------------------------
def timed(fn: Callable[[], Any], device: Union[str, torch.device], inner: int = 1) -> float:
    """Seconds per call of `fn`, averaged over `inner` back-to-back calls
    (`patchenv.timing.DeviceTimer`: the device's earlier work waited for first, its queued
    work included)."""
    return DeviceTimer(device)(fn, inner)


def paired_stats(num: Sequence[float], den: Sequence[float]) -> dict:
    """Median and quartiles of per-repeat ratios num[i] / den[i] of two steps timed side by
    side (load that comes and goes cancels out)."""
    r = np.asarray(num) / np.asarray(den)
    return {"ratio": float(np.median(r)), "ratio_p25": float(np.percentile(r, 25)),
            "ratio_p75": float(np.percentile(r, 75))}


def mean_ci(values: Iterable[Optional[float]], level: float = 0.95) -> tuple[Optional[float], Optional[float], int]:
    """Mean and the half-width of its `level` confidence interval (Student's t over the
    non-None values; None for fewer than two), and the count."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None, None, 0
    if len(vals) < 2:
        return vals[0], None, 1
    from scipy import stats  # scikit-learn's dependency: always installed with it

    half = float(stats.t.ppf(0.5 + level / 2, len(vals) - 1) * np.std(vals, ddof=1) / math.sqrt(len(vals)))
    return float(np.mean(vals)), half, len(vals)


# Fewer seeds than this: the table shows the mean and the range, not a confidence interval.
MIN_SEEDS_FOR_INTERVAL = 3


def fmt_ci(values: Iterable[Optional[float]], fmt: str = "{:.3f}", scale: float = 1.0,
           null: Optional[float] = None) -> str:
    """'mean ± half-width' of the 95% interval; with a `null` value (0 for a paired
    difference, 1 for a ratio), a trailing '*' when the interval excludes it. With fewer
    than `MIN_SEEDS_FOR_INTERVAL` values: 'mean (min to max)'."""
    mean, half, n = mean_ci(values)
    if n == 0:
        return "-"
    if half is None:
        return fmt.format(mean * scale)
    if n < MIN_SEEDS_FOR_INTERVAL:  # a t interval over 2 seeds is mostly its t factor (12.7): show the spread
        vals = [float(v) * scale for v in values if v is not None and math.isfinite(float(v))]
        low, high = fmt.format(min(vals)), fmt.format(max(vals))
        return fmt.format(mean * scale) if low == high else f"{fmt.format(mean * scale)} ({low} to {high})"
    star = "*" if null is not None and abs(mean - null) > half else ""
    return f"{fmt.format(mean * scale)} ± {fmt.replace('+', '').format(half * scale)}{star}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def priced_steps(curve: Sequence[dict], price: Callable[[float], float], upto_step: Optional[int] = None) -> float:
    """A run's steps read off its epoch curve (each row: ``global_step`` at its end,
    ``mean_patches_kept`` over it), each epoch's steps at ``price(its mean patches kept)``.
    ``upto_step``: only the steps up to it (its epoch's rate for the part of that epoch)."""
    total, prev = 0.0, 0
    for row in curve:
        end = row["global_step"] if upto_step is None else min(row["global_step"], upto_step)
        if end > prev:
            total += (end - prev) * price(row["mean_patches_kept"])
        prev = row["global_step"]
        if upto_step is not None and prev >= upto_step:
            break
    return total


def modeled_steps(curve: Sequence[dict], fixed_cost: float, num_patches: int,
                  upto_step: Optional[int] = None) -> float:
    """A run's training under the time objective's cost model (`agents.evolve`: a step that
    keeps k patches costs ``fixed_cost + k`` patch-steps), in steps of every patch, read off
    its epoch curve (`priced_steps`)."""
    return priced_steps(curve, lambda kept: fixed_cost + kept, upto_step) / (fixed_cost + num_patches)

"""What the rows say about each selector against ``all``: speed-ups, accuracy changes,
the target accuracy and the cost to reach it, and the printed summary (mean and 95%
confidence interval over seeds, differences paired by seed).

A grid point is its own comparison: its own ``all`` runs, its own split for the curves.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from benchmarks.common import fmt_ci, markdown_table
from benchmarks.sweep.plan import REFERENCE


# The compact table's columns (what `make run` prints): accuracy, its change, and the cost
# against `all`, with whether and how fast each selector reached `all`'s final accuracy.
COMPACT = ("selector", "seeds", "test acc % (all patches)", "Δ test acc vs all (points, paired)", "patches kept",
           "FLOPs vs all", "time vs all", "reached target", "speed-up to target")


def curve_key(runs: list[dict]) -> str:
    """The accuracy the curves, targets and time-to-target use: the split the runs
    evaluated after every epoch, as the runner decided and recorded it (a row's
    ``eval_split``, from its metrics' meta): validation when they had one, else test."""
    return "val_accuracy" if any(r.get("eval_split") == "val" for r in runs) else "test_accuracy"


def fill_relative(runs: list[dict], target: Optional[float]) -> None:
    """speedup_vs_all, accuracy_delta_vs_all (final test accuracy), the target (the `all`
    run's final accuracy on the curves' split, same seed, unless given) and the cost to
    reach it in seconds, tokens and FLOPs, with speed-ups against `all` on the same seed
    (None where there is none or a run never reached it)."""
    keys = {setting: curve_key([r for r in runs if r.get("setting") == setting])
            for setting in {r.get("setting") for r in runs}}
    ref = {(r["seed"], r.get("setting")): r for r in runs if r["selector"] == REFERENCE}
    for r in runs:
        key = keys[r.get("setting")]
        a = ref.get((r["seed"], r.get("setting")))
        tgt = target if target is not None else (a["curve"][-1][key] if a and a["curve"] else None)
        r["target_accuracy"] = tgt
        reached = first_reaching(r["curve"], key, tgt)
        r["time_to_target_s"], r["tokens_to_target"], r["flops_to_target"] = (
            (reached["train_time_s"], reached["train_tokens"], reached["train_flops"]) if reached else (None,) * 3)
        if a is None:
            r["speedup_vs_all"] = r["accuracy_delta_vs_all"] = r["time_vs_all"] = r["flops_vs_all"] = None
            r["speedup_to_target"] = r["speedup_to_target_flops"] = None
            continue
        r["speedup_vs_all"] = a["train_time_s"] / r["train_time_s"] if r["train_time_s"] > 0 else None
        r["time_vs_all"] = r["train_time_s"] / a["train_time_s"] if a["train_time_s"] > 0 else None
        r["flops_vs_all"] = r["train_flops"] / a["train_flops"] if a.get("train_flops") else None
        r["accuracy_delta_vs_all"] = r["test_accuracy"] - a["test_accuracy"]
        a_reached = first_reaching(a["curve"], key, tgt)
        r["speedup_to_target"] = (a_reached["train_time_s"] / r["time_to_target_s"]
                                  if a_reached and r["time_to_target_s"] else None)
        r["speedup_to_target_flops"] = (a_reached["train_flops"] / r["flops_to_target"]
                                        if a_reached and r["flops_to_target"] else None)
        r["accuracy_delta_at_equal_flops"] = delta_at_equal_flops(r, a, key)


def delta_at_equal_flops(run: dict, ref: dict, key: str) -> Optional[float]:
    """The run's final accuracy (on the curves' split) minus the reference's at the same
    training FLOPs: the reference's curve interpolated linearly in FLOPs between its
    evaluations, held at its first (last) value before (after) them. Before its first
    evaluation the reference is credited with its first epoch's accuracy, which can only
    favour it. None without the data."""
    pts = [(p["train_flops"], p[key]) for p in ref["curve"] if p.get(key) is not None and p.get("train_flops")]
    mine = [p for p in run["curve"] if p.get(key) is not None and p.get("train_flops")]
    if not pts or not mine:
        return None
    xs, ys = zip(*pts)
    return float(mine[-1][key] - np.interp(mine[-1]["train_flops"], xs, ys))


def first_reaching(curve: list[dict], key: str, target: Optional[float]) -> Optional[dict]:
    """The first evaluation of `curve` whose `key` accuracy reached `target` (to 1e-12)."""
    if target is None:
        return None
    for point in curve:
        if point.get(key) is not None and point[key] >= target - 1e-12:
            return point
    return None


def summary_table(runs: list[dict], selectors: list[str], settings: Optional[list] = None,
                  compact: bool = False) -> str:
    """Per selector: mean ± the 95% confidence interval over seeds (with fewer than three,
    the mean and the range); the differences against `all` are paired by seed, and a '*'
    marks those whose interval excludes zero (one for the speed-ups, taken over the seeds
    that reached the target). With a grid, a first column names the setting and each
    setting's selectors come together. ``compact``: the columns a reader needs for a
    verdict (`COMPACT`); the full table goes to results.md."""
    key = curve_key(runs)
    settings = list(dict.fromkeys(list(settings or []) + [r.get("setting") for r in runs])) or [None]
    grid = settings != [None]
    rows = []
    for setting, name in ((t, n) for t in settings
                          for n in dict.fromkeys(selectors + [r["selector"] for r in runs])):
        rs = [r for r in runs if r["selector"] == name and r.get("setting") == setting]
        if not rs:
            continue

        def col(k, fmt="{:.3f}", scale=1.0, null=None):
            return fmt_ci([r.get(k) for r in rs], fmt, scale, null=None if name == REFERENCE else null)

        rows.append(([setting] if grid else []) + [name, len(rs), col("test_accuracy", "{:.2f}", 100),
                     col("accuracy_delta_vs_all", "{:+.2f}", 100, null=0.0),
                     col("test_accuracy_masked", "{:.2f}", 100), col("test_accuracy_random_masks", "{:.2f}", 100),
                     col("mean_patches_kept", "{:.1f}"), col("train_time_s", "{:.1f}"),
                     col("train_flops", "{:.3g}", 1e-12), col("flops_vs_all", "{:.2f}", null=1.0),
                     col("time_vs_all", "{:.2f}", null=1.0), col("speedup_vs_all", "{:.2f}"),
                     f"{sum(r.get('flops_to_target') is not None for r in rs)}/{len(rs)}",
                     col("time_to_target_s", "{:.1f}"), col("speedup_to_target", "{:.2f}", null=1.0),
                     col("speedup_to_target_flops", "{:.2f}", null=1.0),
                     col("accuracy_delta_at_equal_flops", "{:+.2f}", 100, null=0.0),
                     col("agent_overhead_share", "{:.1f}", 100)])
    header = (["setting"] if grid else []) + [
              "selector", "seeds", "test acc % (all patches)", "Δ test acc vs all (points, paired)",
              "test acc % (own masks)", "test acc % (random masks)", "patches kept", "train time s",
              "train TFLOPs", "FLOPs vs all", "time vs all", "speed-up vs all", "reached target",
              f"time to target s ({key.split('_')[0]})",
              "speed-up to target", "speed-up to target (FLOPs)",
              f"Δ {key.split('_')[0]} acc at equal FLOPs (points, paired)", "agent overhead %"]
    if compact:
        keep = [i for i, h in enumerate(header) if h in COMPACT or h == "setting"]
        header, rows = [header[i] for i in keep], [[row[i] for i in keep] for row in rows]
    return markdown_table(header, rows)

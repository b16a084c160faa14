"""The statistics the deep-RL community reports (Agarwal et al., "Deep Reinforcement
Learning at the Edge of the Statistical Precipice", NeurIPS 2021; the `rliable` library),
next to the paired t intervals of `benchmarks.sweep.stats`:

- **IQM**: the interquartile mean of the runs' final test accuracy, the mean of the
  middle 50% (``scipy.stats.trim_mean(x, 0.25)``: int(n / 4) runs cut at each end). It is
  robust to one outlying seed and uses more of the data than the median.
- **Stratified bootstrap intervals**: 95% percentile intervals, resampling the runs
  with replacement within each task (here a task is a grid point; a sweep without a grid
  is one task).
- **Probability of improvement** P(X > Y): the chance that a run of selector X ends
  above a run of Y on the same task, ties counting half (the Mann-Whitney U statistic
  over all pairs of runs, averaged over tasks), with its stratified bootstrap interval.
  It is given against ``all`` (is the selector at least as accurate?).
- **P(fewer FLOPs to target than `grow`)**: for each learned or other selector, the share
  of seeds on which it reached the target (``all``'s final accuracy) with fewer training
  FLOPs than ``grow`` on the same seed. A run that never reached it counts as infinite
  FLOPs; both never reaching it is a tie (half).

- **IQM cost to target against `all`**: per seed, the selector's training time (FLOPs)
  to the target over `all`'s on the same seed (seeds where `all` reached it; a selector
  that did not counts as infinite, so up to a quarter of misses are cut off and more make
  the IQM infinite), with its stratified bootstrap interval: the time-to-train figure of
  a ``--stop-at-target`` suite.

Why our own code: ``rliable`` 1.2.0 does not import here. Its bootstrap dependency
``arch`` 7.2.0 fails at import with pandas 3 (``deprecate_kwarg() missing 1 required
positional argument``). These are its definitions, and a test checks them against
values computed by hand.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from benchmarks.common import markdown_table
from benchmarks.sweep.plan import REFERENCE

BASELINE = "grow"  # the best training-free schedule: a learned selector earns its training by beating it
REPS = 5000  # bootstrap resamples
LEVEL = 0.95
MISS = 1e12  # a run that never reached the target, in a cost ratio's bootstrap (far above any real ratio)


def iqm(x: np.ndarray) -> np.ndarray:
    """Interquartile mean over the last axis: sorted, int(n / 4) values cut at each end,
    the rest averaged (a leading axis holds bootstrap resamples)."""
    x = np.sort(np.asarray(x, dtype=float), axis=-1)
    cut = int(0.25 * x.shape[-1])
    return x[..., cut:x.shape[-1] - cut].mean(axis=-1)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) over all pairs (x_i, y_j) of the last axes, ties half."""
    x, y = np.asarray(x, dtype=float)[..., :, None], np.asarray(y, dtype=float)[..., None, :]
    return ((x > y) + 0.5 * (x == y)).mean(axis=(-2, -1))


def stratified_bootstrap(statistic, tasks: list[tuple], reps: int = REPS, seed: int = 0,
                         level: float = LEVEL) -> tuple[float, float, float]:
    """(point estimate, low, high): `statistic` averaged over `tasks` (each a tuple of
    per-run arrays), and its percentile interval from resampling each array's runs with
    replacement, task by task (all `reps` resamples at once, on a leading axis)."""
    rng = np.random.default_rng(seed)
    point = float(np.mean([statistic(*arrays) for arrays in tasks]))
    draws = np.mean([statistic(*(a[rng.integers(0, len(a), (reps, len(a)))] for a in arrays))
                     for arrays in tasks], axis=0)
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return point, float(low), float(high)


def fewer_flops_to_target(runs: list[dict], selector: str, baseline: str = BASELINE) -> Optional[tuple[float, int]]:
    """(share of seeds where `selector` needed fewer FLOPs to target than `baseline` on
    the same seed and grid point, number of pairs); None without pairs."""
    base = {(r["seed"], r.get("setting")): r for r in runs if r["selector"] == baseline}
    wins = []
    for r in runs:
        b = base.get((r["seed"], r.get("setting")))
        if r["selector"] != selector or b is None:
            continue
        mine, theirs = (math.inf if v is None else v for v in (r.get("flops_to_target"), b.get("flops_to_target")))
        wins.append(0.5 if mine == theirs else float(mine < theirs))
    return (float(np.mean(wins)), len(wins)) if wins else None


def cost_to_target_ratios(runs: list[dict], selector: str, key: str) -> list[np.ndarray]:
    """Per grid point, the `selector`'s `key` (``time_to_target_s`` or ``flops_to_target``)
    over `all`'s on the same seed, for the seeds where `all` reached the target (inf where
    the selector did not); points without such a seed are left out."""
    ref = {(r["seed"], r.get("setting")): r for r in runs if r["selector"] == REFERENCE}
    by_point: dict = {}
    for r in runs:
        a = ref.get((r["seed"], r.get("setting")))
        if r["selector"] != selector or a is None or not a.get(key):
            continue
        by_point.setdefault(r.get("setting"), []).append(math.inf if r.get(key) is None else r[key] / a[key])
    return [np.array(v) for v in by_point.values()]


def rl_statistics(runs: list[dict], selectors: list[str], reps: int = REPS) -> dict:
    """Per selector: IQM of the final test accuracy with its interval, P(better than all)
    with its interval, and P(fewer FLOPs to target than grow). JSON-able."""
    settings = list(dict.fromkeys(r.get("setting") for r in runs))
    scores = {(name, s): np.array([r["test_accuracy"] for r in runs if r["selector"] == name and r.get("setting") == s])
              for name in selectors for s in settings}
    out = {}
    for name in selectors:
        mine = [scores[(name, s)] for s in settings if len(scores[(name, s)])]
        if not mine:
            continue
        entry = {"runs": int(sum(len(a) for a in mine))}
        entry["iqm_test_accuracy"] = dict(zip(("value", "low", "high"),
                                              stratified_bootstrap(iqm, [(a,) for a in mine], reps)))
        pairs = [(scores[(name, s)], scores[(REFERENCE, s)]) for s in settings
                 if len(scores[(name, s)]) and len(scores.get((REFERENCE, s), []))]
        if name != REFERENCE and pairs:
            entry["p_better_than_all"] = dict(zip(("value", "low", "high"),
                                                  stratified_bootstrap(probability_of_improvement, pairs, reps)))
        if name != REFERENCE:
            for key, field in (("time_to_target_s", "iqm_time_to_target_vs_all"),
                               ("flops_to_target", "iqm_flops_to_target_vs_all")):
                ratios = cost_to_target_ratios(runs, name, key)
                if ratios:
                    # A miss enters the bootstrap as MISS (percentiles between two infinities
                    # would be NaN) and any estimate it dominates comes out as inf.
                    finite = [(np.minimum(a, MISS),) for a in ratios]
                    entry[field] = {k: (math.inf if v >= MISS / 1e6 else v)
                                    for k, v in zip(("value", "low", "high"), stratified_bootstrap(iqm, finite, reps))}
        if name != BASELINE:
            fewer = fewer_flops_to_target(runs, name)
            if fewer is not None:
                entry["p_fewer_flops_to_target_than_grow"], entry["pairs_with_grow"] = fewer
        out[name] = entry
    return out


def rl_table(stats: dict) -> str:
    """The statistics as a Markdown table."""
    def interval(d: Optional[dict], scale: float = 1.0, fmt: str = "{:.2f}") -> str:
        if d is None:
            return "-"
        return f"{fmt.format(d['value'] * scale)} [{fmt.format(d['low'] * scale)}, {fmt.format(d['high'] * scale)}]"

    rows = [[name, s["runs"], interval(s["iqm_test_accuracy"], 100), interval(s.get("p_better_than_all")),
             "-" if "p_fewer_flops_to_target_than_grow" not in s
             else f"{s['p_fewer_flops_to_target_than_grow']:.2f} ({s['pairs_with_grow']} seeds)",
             interval(s.get("iqm_time_to_target_vs_all")), interval(s.get("iqm_flops_to_target_vs_all"))]
            for name, s in stats.items()]
    return markdown_table(["selector", "runs", "IQM test acc % [95% CI]", "P(better than all) [95% CI]",
                           f"P(fewer FLOPs to target than {BASELINE})", "IQM time to target / all's [95% CI]",
                           "IQM FLOPs to target / all's [95% CI]"], rows)

"""The fixed step cost each selector would need to meet the first target on each evaluation
seed of ``fmnist-long``, against the fixed cost this machine's step has.

On the CPU a run of the suite is deterministic: the same seed gives the same steps, the
same patches kept and the same accuracies, whatever the clock does (the 2026-12-06 and
2026-12-07 sweeps agree run for run). Only the price of a step changes with the machine
and the code. Under the time objective's cost model a step keeping k patches costs F + k
patch-steps, `all`'s F + 64, so a run's time ratio to `all` on a seed is a function of F
alone, rising with F for any run that keeps fewer patches than `all` per step but trains
more steps. For each selector and seed this script reads off the curves:

- the FLOPs ratio and the test accuracy against `all`'s at the stop (the first target's
  other two parts, which no step cost changes);
- the fixed costs F (0-64 patch-steps, by 0.1) at which the modeled time ratio is at most
  0.50: one interval, since the ratio is monotone in F (none: the run misses at every F);
- for each selector, the fixed costs at which it passes the time part on every seed, and
  the seeds where the FLOPs or test part fails whatever F is.

It then reads the fixed cost of this machine's step from `benchmarks.throughput` results
(F = (64 r - k) / (1 - r), r the k-patch step's time over the full step's, at k = 8 and 16,
as the earlier pages did) for each variant measured: the env's count step and its floors.
And, without the F + k line, it prices every run's epochs at the step times the first
throughput file measured, for each of its variants.

    python reports/keeprate-time-v11-2026-12-07/fixed_cost_needed.py --out DIR \\
        --runs RESULTS_JSON [RESULTS_JSON ...] --throughput THROUGHPUT_JSON [...]

``--runs``: ``fmnist-long`` results (stopped at the target); the first file naming a
(selector, seed) is read, `all` from the file that holds the selector's run. Writes
fixed_cost_needed.json, .md and .png.
"""
import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.common import modeled_steps, priced_steps, pyplot, save_figure
from patchenv.atomic import atomic_write_json, atomic_write_text

BAR_TIME, BAR_FLOPS, BAR_TEST = 0.50, 0.40, -0.005  # the first target's three parts
SEEDS = (0, 1, 2, 3, 4)  # the suite's evaluation seeds
NAMES = {"keeprate:objective=time:policy=agents/policies/keeprate-time-dqn-steps-fmnist.zip:decide_every=4215":
         "SB3 DQN (shipped)", "evolved:objective=time": "evolved:objective=time", "grow": "grow",
         "grow:k0=9:start=0.63:fraction=1.02:selection=image": "hand schedule (evolved's curve)",
         "keeprate:objective=time": "SB3 PPO keeprate (12-06)"}
F_MAX = 64.0  # fixed costs looked at: up to a step's fixed cost as large as all its patch work
F_GRID = np.round(np.arange(0.0, F_MAX + 1e-9, 0.1), 1)


def time_ratio(run: dict, ref: dict, fixed: float) -> float:
    """The run's modeled time to target over `all`'s on the same seed, at fixed cost F."""
    n = run["num_patches"]
    return modeled_steps(run["curve"], fixed, n) / modeled_steps(ref["curve"], fixed, n)


def passing_fixed_costs(run: dict, ref: dict) -> np.ndarray:
    """(len(F_GRID),) bool: at which fixed costs of F_GRID the modeled time ratio is at most
    BAR_TIME. The ratio is monotone in F (a ratio of two linear functions: rising for a run
    with more steps than `all`'s, falling for one with fewer), so the passing costs are one
    interval that touches 0 or F_MAX."""
    return np.array([time_ratio(run, ref, f) <= BAR_TIME for f in F_GRID])


def interval(passing: np.ndarray):
    """[lowest, highest] passing F of the grid, or None."""
    where = F_GRID[passing]
    return None if where.size == 0 else [float(where.min()), float(where.max())]


def load(paths: list[str]) -> dict:
    """{(selector, seed): (run, all's run on the seed from the same file)} for the first file
    naming each pair."""
    pairs = {}
    for path in paths:
        runs = json.loads(Path(path).read_text())["runs"]
        refs = {int(r["seed"]): r for r in runs if r["selector"] == "all"}
        for r in runs:
            key = (r["selector"], int(r["seed"]))
            if r["selector"] in NAMES and key[1] in SEEDS and key not in pairs and key[1] in refs:
                pairs[key] = (r, refs[key[1]], path)
    return pairs


def step_curves(path: str) -> dict:
    """{variant: (ks, seconds a step)} of a throughput result's first batch size."""
    block = json.loads(Path(path).read_text())["results"][0]
    curves = {}
    for r in sorted(block["rows"], key=lambda r: r["k"]):
        ks, ts = curves.setdefault(r["variant"], ([], []))
        ks.append(r["k"])
        ts.append(r["median_s"])
    return curves


def curve_time(curve: list[dict], ks: list, ts: list) -> float:
    """A run's training seconds with each epoch's steps priced at the measured step time of
    its mean patches kept (linear between the measured counts): the step's real shape, the
    attention's square and the fixed work included, in place of the F + k line."""
    return priced_steps(curve, lambda kept: float(np.interp(kept, ks, ts)))


def measured_fixed_costs(paths: list[str]) -> list[dict]:
    """F of every variant of each throughput result, from its k = 8 and 16 steps against its full step."""
    out = []
    for path in paths:
        data = json.loads(Path(path).read_text())
        for block in data["results"]:
            n = block["num_patches"]
            med = {(r["variant"], r["k"]): r["median_s"] for r in block["rows"]}
            for variant in sorted({v for v, _ in med}):
                row = {"file": path, "variant": variant, "batch_size": block["batch_size"],
                       "full_ms": 1e3 * med[(variant, n)]}
                for k in (8, 16):
                    if (variant, k) in med:
                        r = med[(variant, k)] / med[(variant, n)]
                        row[f"F_k{k}"] = (n * r - k) / (1 - r)
                        row[f"ms_k{k}"] = 1e3 * med[(variant, k)]
                out.append(row)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", nargs="+", required=True)
    p.add_argument("--throughput", nargs="*", default=[])
    p.add_argument("--out", required=True)
    args = p.parse_args()
    pairs = load(args.runs)
    # Each run priced at the step-time curves of the first throughput file (its variants).
    curves = step_curves(args.throughput[0]) if args.throughput else {}
    rows = []
    for (selector, seed), (run, ref, path) in sorted(pairs.items(), key=lambda kv: (NAMES[kv[0][0]], kv[0][1])):
        if not run.get("time_to_target_s"):
            continue
        flops = run["flops_to_target"] / ref["flops_to_target"]
        test = run["test_accuracy"] - ref["test_accuracy"]
        passing = passing_fixed_costs(run, ref)
        rows.append({"selector": NAMES[selector], "seed": seed, "source": path, "epochs": run["epochs"],
                     "all_epochs": ref["epochs"], "flops_ratio": flops, "test_delta_points": 100 * test,
                     "time_ratio_F0": time_ratio(run, ref, 0.0), "time_ratio_F24": time_ratio(run, ref, 24.0),
                     "passing_F": interval(passing), "passing_mask": passing,
                     "flops_ok": flops <= BAR_FLOPS, "test_ok": test >= BAR_TEST,
                     "measured_time_ratio": run["time_to_target_s"] / ref["time_to_target_s"],
                     "time_ratio_at_step_curve": {v: curve_time(run["curve"], *c) / curve_time(ref["curve"], *c)
                                                  for v, c in curves.items()}})
    summary = {}
    for name in sorted({r["selector"] for r in rows}):
        mine = [r for r in rows if r["selector"] == name]
        summary[name] = {"seeds": sorted(r["seed"] for r in mine),
                         "flops_and_test_on_every_seed": all(r["flops_ok"] and r["test_ok"] for r in mine),
                         "seeds_failing_flops_or_test": [r["seed"] for r in mine
                                                         if not (r["flops_ok"] and r["test_ok"])],
                         "time_passing_F_on_every_seed": interval(np.logical_and.reduce(
                             [r["passing_mask"] for r in mine]))}
    for r in rows:
        del r["passing_mask"]
    result = {"bars": {"time": BAR_TIME, "flops": BAR_FLOPS, "test_points": 100 * BAR_TEST},
              "rows": rows, "summary": summary, "measured_fixed_costs": measured_fixed_costs(args.throughput)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "fixed_cost_needed.json", result)
    text = report(result)
    atomic_write_text(out / "fixed_cost_needed.md", text)
    plot(result, out / "fixed_cost_needed.png")
    print(text)


def f_cell(span) -> str:
    if span is None:
        return "none"
    lo, hi = span
    if lo == 0.0:
        return "any" if hi == F_MAX else f"F <= {hi:.1f}"
    return f"F >= {lo:.1f}" if hi == F_MAX else f"{lo:.1f} <= F <= {hi:.1f}"


def report(result: dict) -> str:
    lines = ["# The fixed step cost each selector needs on each seed (fmnist-long, first target)", "",
             "F passing: the fixed costs (patch-steps a step, 0-64) at which the modeled time to target is at "
             "most 0.50x `all`'s on the seed. FLOPs and test accuracy do not depend on F (✗: that part fails).", "",
             "| selector | seed | epochs (all's) | FLOPs / all's | Δ test, points | modeled time / all's at F = 0, 24 "
             "| measured time / all's | F passing |", "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        mark = lambda ok: "" if ok else " ✗"  # noqa: E731
        lines.append(f"| {r['selector']} | {r['seed']} | {r['epochs']:.2f} ({r['all_epochs']:.2f}) | "
                     f"{r['flops_ratio']:.2f}{mark(r['flops_ok'])} | "
                     f"{r['test_delta_points']:+.2f}{mark(r['test_ok'])} | "
                     f"{r['time_ratio_F0']:.2f}, {r['time_ratio_F24']:.2f} | {r['measured_time_ratio']:.2f} | "
                     f"{f_cell(r['passing_F'])} |")
    lines += ["", "| selector | seeds | FLOPs and test parts on every seed | time part on every seed at |",
              "|---|---|---|---|"]
    for name, s in result["summary"].items():
        parts = "yes" if s["flops_and_test_on_every_seed"] else f"no (seeds {s['seeds_failing_flops_or_test']})"
        lines.append(f"| {name} | {len(s['seeds'])} | {parts} | {f_cell(s['time_passing_F_on_every_seed'])} |")
    priced = [v for v in (result["rows"][0]["time_ratio_at_step_curve"] if result["rows"] else {})]
    if priced:
        lines += ["", "Time to target over `all`'s with every epoch priced at the measured step time of its mean "
                  "patches kept (the first throughput file's curves), against the bar 0.50:", "",
                  "| selector | seed | " + " | ".join(priced) + " |", "|---|---|" + "---|" * len(priced)]
        for r in result["rows"]:
            lines.append(f"| {r['selector']} | {r['seed']} | " + " | ".join(
                f"{r['time_ratio_at_step_curve'][v]:.2f}" for v in priced) + " |")
    if result["measured_fixed_costs"]:
        lines += ["", "The fixed cost of this machine's step (`benchmarks.throughput`):", "",
                  "| measurement | variant | batch | full step, ms | 16-patch step, ms | 8-patch step, ms "
                  "| F from k = 16 | F from k = 8 |", "|---|---|---|---|---|---|---|---|"]
        for m in result["measured_fixed_costs"]:
            lines.append(f"| {Path(m['file']).parent.name} | {m['variant']} | {m['batch_size']} | {m['full_ms']:.2f} | "
                         f"{m.get('ms_k16', float('nan')):.2f} | "
                         f"{m.get('ms_k8', float('nan')):.2f} | {m.get('F_k16', float('nan')):.1f} | "
                         f"{m.get('F_k8', float('nan')):.1f} |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    from matplotlib.patches import Patch

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.8))
    names = list(result["summary"])
    width = 0.8 / len(SEEDS)
    for j, name in enumerate(names):
        for i, seed in enumerate(SEEDS):
            r = next((r for r in result["rows"] if r["selector"] == name and r["seed"] == seed), None)
            if r is None:
                continue
            span = r["passing_F"]
            x = j + (i - (len(SEEDS) - 1) / 2) * width
            ok = r["flops_ok"] and r["test_ok"]
            if span is None:
                ax.plot(x, 1, "x", color=f"C{i}")
            else:
                ax.bar(x, span[1] - span[0], width * 0.9, bottom=span[0], color=f"C{i}", alpha=1.0 if ok else 0.35,
                       hatch=None if ok else "//")
    handles = [Patch(color=f"C{i}", label=f"seed {seed}") for i, seed in enumerate(SEEDS)]
    measured = result["measured_fixed_costs"]
    first = [m for m in measured if m["file"] == measured[0]["file"] and "F_k8" in m] if measured else []
    for m, ls in zip(first, ("-", "--", ":", "-.")):  # the first throughput file's variants
        handles.append(ax.axhline(m["F_k8"], color="k", ls=ls, lw=1, label=f"this CPU: {m['variant']} (F from k = 8)"))
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set(ylabel="fixed costs F passing 0.50x time (patch-steps)", ylim=(0, 40),
           title="fmnist-long, first target seed by seed: the fixed step costs at which each run passes the time "
                 "part (x: none; hatched: fails FLOPs or test)")
    ax.title.set_fontsize(9)
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    save_figure(fig, path)


if __name__ == "__main__":
    main()

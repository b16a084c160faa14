"""Where a selector's time to target goes against `all`'s, seed by seed: how many steps it
took to the target, what a step cost it (ms, mean patches kept), and the two ratios these
make, time = steps ratio x step-cost ratio, next to its exact FLOPs ratio.

    python reports/keeprate-time-v8-2026-12-07/step_costs.py RESULTS_JSON [--selector PREFIX] --out DIR

RESULTS_JSON: a `benchmarks.compare_selectors` results.json holding `all` and the selector
(the first whose name starts with PREFIX, default ``keeprate``) on the same seeds. Writes
step_costs.json and step_costs.md into --out.
"""
import argparse
import json
from pathlib import Path

import numpy as np

from patchenv.atomic import atomic_write, atomic_write_json


def rows(results: dict, prefix: str) -> list[dict]:
    runs = results["runs"]
    out = []
    for ref in sorted((r for r in runs if r["selector"] == "all"), key=lambda r: r["seed"]):
        mine = [r for r in runs if r["seed"] == ref["seed"] and r["selector"].startswith(prefix)]
        if not mine or not ref.get("time_to_target_s") or not mine[0].get("time_to_target_s"):
            continue
        r = mine[0]
        ms, ms_all = (1e3 * x["time_to_target_s"] / x["steps"] for x in (r, ref))
        out.append({"seed": ref["seed"], "selector": r["selector"], "steps": r["steps"], "steps_all": ref["steps"],
                    "ms_per_step": ms, "ms_per_step_all": ms_all, "mean_patches": r["mean_patches_kept"],
                    "steps_ratio": r["steps"] / ref["steps"], "step_cost_ratio": ms / ms_all,
                    "time_ratio": r["time_to_target_s"] / ref["time_to_target_s"],
                    "flops_ratio": r["flops_to_target"] / ref["flops_to_target"]})
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("results", type=Path)
    p.add_argument("--selector", default="keeprate", help="the selector's name prefix (default: keeprate)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    table = rows(json.loads(args.results.read_text()), args.selector)
    if not table:
        raise SystemExit(f"{args.results}: no seed where both all and {args.selector}* reached the target")
    lines = [f"{table[0]['selector']} against all ({args.results})", "",
             "| seed | steps / all's | ms a step (all's) | patches kept, mean | step cost / all's | time / all's "
             "| FLOPs / all's |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['seed']} | {r['steps']} / {r['steps_all']} = {r['steps_ratio']:.2f} | {r['ms_per_step']:.1f} "
              f"({r['ms_per_step_all']:.1f}) | {r['mean_patches']:.1f} | {r['step_cost_ratio']:.2f} | "
              f"{r['time_ratio']:.2f} | {r['flops_ratio']:.2f} |" for r in table]
    mean = {k: float(np.mean([r[k] for r in table])) for k in ("steps_ratio", "step_cost_ratio", "time_ratio",
                                                                 "flops_ratio")}
    lines += [f"| mean | {mean['steps_ratio']:.2f} | | | {mean['step_cost_ratio']:.2f} | {mean['time_ratio']:.2f} "
              f"| {mean['flops_ratio']:.2f} |", ""]
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "step_costs.json", {"results": str(args.results), "rows": table, "mean": mean})
    atomic_write(args.out / "step_costs.md", lambda tmp: tmp.write_text("\n".join(lines)))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

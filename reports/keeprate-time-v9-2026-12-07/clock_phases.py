"""Why a selector's clock ratio to `all` moves from sweep to sweep while its FLOPs do not.

For each seed and selector against `all` of the same results.json, from the runs' epoch
curves:
- time / all's: the measured ratio of times to target;
- modeled: the same ratio from the step counts and patches kept alone, a step costing
  ``FIXED_COST + kept`` patch-steps (`agents.evolve`'s time model, what the time objective
  was trained on), so it is what the ratio would be on a machine whose costs never change;
- cost ratio, common epochs: the selector's time over `all`'s over the epochs both trained
  (interleaved, so under the same load);
- after `all`: the share of the selector's time spent in epochs after `all` had stopped, which
  interleaving cannot pair with any of `all`'s;
- ms a step, each.

    python reports/keeprate-time-v9-2026-12-07/clock_phases.py RESULTS_JSON ... --out DIR
"""
import argparse
import json
from pathlib import Path

from agents.evolve import FIXED_COST
from benchmarks.common import modeled_steps
from patchenv.atomic import atomic_write_json, atomic_write_text

SELECTORS = ("keeprate", "evolved")  # name prefixes compared with all


def phases(path: Path) -> list[dict]:
    runs = json.loads(path.read_text())["runs"]
    out = []
    for seed in sorted({r["seed"] for r in runs}):
        named = {r["selector"].split(":")[0]: r for r in runs if r["seed"] == seed}
        ref = named.get("all")
        if ref is None or not ref.get("time_to_target_s"):
            continue
        ref_curve, n = ref["curve"], ref["num_patches"]
        for prefix in SELECTORS:
            r = named.get(prefix)
            if r is None or not r.get("time_to_target_s"):
                continue
            curve = r["curve"]
            common = min(len(curve), len(ref_curve))
            modeled = modeled_steps(curve, FIXED_COST, n) / ref["steps"]
            out.append({
                "file": str(path), "seed": seed, "selector": r["selector"],
                "time_ratio": r["time_to_target_s"] / ref["time_to_target_s"],
                "modeled_time_ratio": modeled,
                "flops_ratio": r["flops_to_target"] / ref["flops_to_target"],
                "common_epochs": common,
                "common_cost_ratio": (sum(e["epoch_time_s"] for e in curve[:common])
                                      / sum(e["epoch_time_s"] for e in ref_curve[:common])),
                "after_all_share": sum(e["epoch_time_s"] for e in curve[common:]) / r["time_to_target_s"],
                "ms_per_step": 1e3 * r["time_to_target_s"] / r["steps"],
                "ms_per_step_all": 1e3 * ref["time_to_target_s"] / ref["steps"],
            })
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("results", type=Path, nargs="+")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    rows = [row for path in args.results for row in phases(path)]
    if not rows:
        raise SystemExit("expected results.json files with `all` and a keeprate or evolved run on a seed")
    lines = [f"a step modeled as {FIXED_COST:g} + kept patch-steps (agents.evolve.FIXED_COST)", "",
             "| file | seed | selector | time / all's | modeled | FLOPs / all's | cost ratio, common epochs | "
             "time after all stopped | ms a step (all's) |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {Path(r['file']).parent.name} | {r['seed']} | {r['selector'].split(':')[0]} | "
              f"{r['time_ratio']:.2f} | {r['modeled_time_ratio']:.2f} | {r['flops_ratio']:.2f} | "
              f"{r['common_cost_ratio']:.2f} ({r['common_epochs']} epochs) | {100 * r['after_all_share']:.0f}% | "
              f"{r['ms_per_step']:.1f} ({r['ms_per_step_all']:.1f}) |" for r in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "clock_phases.json", rows)
    atomic_write_text(args.out / "clock_phases.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

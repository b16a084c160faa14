"""What each time-objective DQN learned, from its learning curve and its policy file:

- its proxy runs' scores (modeled time to target over the reference's), mean and median by
  blocks of 25 runs consumed, and how many missed;
- the schedule its greedy policy plays: a policy reading only ``budget_done``,
  ``kept_so_far`` and ``last_kept`` (which its own choices set) plays the same counts on
  every run, so rolling it forward decision by decision from a fresh run gives its exact
  schedule (`q_credit.greedy_path`); next to it, evolved:objective=time's count at the same decisions (its feedback
  term read as 0: its trend input);
- the mean squared distance, in patches, of that schedule from evolved's over the plan and
  the same length past it (budget_done 0-2).

    python reports/keeprate-time-v6-2026-12-07/learning_summary.py results/v6/dqn-b16-seed0 ... \
        --out reports/keeprate-time-v6-2026-12-07/learning-summary

Each folder holds learning_curve.json and policy.zip (``python -m agents.keeprate --report``).
Writes learning_summary.json and learning_summary.md into --out.
"""
import argparse
import json
from pathlib import Path

import numpy as np

from agents.evolved_curve import PACKAGED_FOR
from agents.evolved_curve import read_policy as read_curve
from patchenv.atomic import atomic_write, atomic_write_json
from patchenv.env.progress import PROGRESS_FEATURES
from q_credit import HORIZON, greedy_path  # this folder's: the path a self-determined policy plays

BLOCK = 25
BUDGET = PROGRESS_FEATURES.index("budget_done")


def summarize(folder: Path) -> dict:
    curve = json.loads((folder / "learning_curve.json").read_text())
    recipe, runs = curve["recipe"], curve["runs"]
    plan, every, n = recipe["references"][0]["steps"], recipe["decide_every"], recipe["num_patches"]
    decisions = int(np.ceil(HORIZON * plan / every))
    counts = [step["count"] for step in greedy_path(folder / "policy.zip")[1]][:decisions]
    evolved, _ = read_curve(PACKAGED_FOR["time"])
    obs = np.zeros(len(PROGRESS_FEATURES))
    ev = []
    for j in range(decisions):
        obs[BUDGET] = j * every / plan
        ev.append(evolved.count(obs, n))
    blocks = []
    for start in range(0, len(runs), BLOCK):
        part = runs[start:start + BLOCK]
        scores = [r["score"] for r in part]
        blocks.append({"runs": f"{start + 1}-{start + len(part)}", "mean": float(np.mean(scores)),
                       "median": float(np.median(scores)), "missed": sum(not r["reached"] for r in part)})
    return {"folder": str(folder), "actions": recipe.get("actions", "levels"), "observe": recipe["observe"],
            "seed": recipe["seed"], "runs": len(runs), "train_time_s": recipe["train_time_s"], "blocks": blocks,
            "budget_done": [round(j * every / plan, 3) for j in range(decisions)], "greedy": counts,
            "evolved": ev, "rms_from_evolved": float(np.sqrt(np.mean((np.array(counts) - np.array(ev)) ** 2)))}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("folders", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    rows = [summarize(f) for f in args.folders]
    lines = []
    for r in rows:
        lines += [f"### {r['folder']} (actions {r['actions']}, observe {','.join(r['observe'])}, seed {r['seed']}: "
                  f"{r['runs']} runs, {r['train_time_s']:.0f} s)", "",
                  "| runs | mean score | median | missed |", "|---|---|---|---|"]
        lines += [f"| {b['runs']} | {b['mean']:.3f} | {b['median']:.3f} | {b['missed']} |" for b in r["blocks"]]
        lines += ["", "| budget_done | " + " | ".join(f"{b:.2f}" for b in r["budget_done"]) + " |",
                  "|---" * (len(r["budget_done"]) + 1) + "|",
                  "| greedy count | " + " | ".join(map(str, r["greedy"])) + " |",
                  "| evolved's | " + " | ".join(map(str, r["evolved"])) + " |", "",
                  f"RMS distance from evolved's counts over budget_done 0-{HORIZON:g}: "
                  f"{r['rms_from_evolved']:.1f} patches", ""]
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "learning_summary.json", rows)
    atomic_write(args.out / "learning_summary.md", lambda tmp: tmp.write_text("\n".join(lines)))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

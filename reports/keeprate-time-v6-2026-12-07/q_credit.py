"""Does a time-objective DQN see any future in keeping more patches? Its Q-values, read
against what a decision costs.

A decision at level k costs (fixed_cost + k) * decide_every in units of the reference's
whole modeled time, so one level more costs `per_level` now, for certain. Whatever keeping
more patches buys (a better model, the target sooner) comes later. For each state along the
policy's own greedy path, this reads the Q-network's value of one level more against one
level less (levels policies: the slope of Q over the levels, least squares; steps policies:
Q(up one) - Q(stay)), adds back the cost paid now, and calls the rest `future`: what the
network expects one level more to save later. Zero means it learned only the cost.

Why it might be zero: a policy that observes only ``budget_done`` reaches the same next
state whatever it keeps, so the one-step target Q(s, a) = r(a) + max Q(s', .) differs
between actions only by r(a), except where the action ends the run inside the decision.
An observation that carries what the run has been fed (``kept_so_far``) gives the next
state a trace of the choice.

    python reports/keeprate-time-v6-2026-12-07/q_credit.py POLICY.zip ... --out reports/keeprate-time-v6-2026-12-07/q-credit
"""
import argparse
from pathlib import Path

import numpy as np
import torch

from agents.keeprate_file import PolicyHeader
from agents.keeprate_task import LEVEL_STEPS, count_for, played_level
from agents.progress_view import feature_index
from patchenv.atomic import atomic_write, atomic_write_json
from patchenv.env.progress import PROGRESS_FEATURES

BUDGET, KEPT_SO_FAR, LAST_KEPT = (PROGRESS_FEATURES.index(f) for f in ("budget_done", "kept_so_far", "last_kept"))
HORIZON = 2.0


SELF_DETERMINED = {"budget_done", "kept_so_far", "last_kept"}  # features a policy's own choices set


def greedy_path(policy: Path) -> tuple[PolicyHeader, list[dict]]:
    """(header, path): the policy's greedy decisions from a fresh run to budget_done
    `HORIZON`, each with its observation's Q-values (a DQN) and the count it keeps. A policy
    reading only `SELF_DETERMINED` features plays this path on every run; others refused."""
    header = PolicyHeader.read(policy)
    recipe, features = header.recipe, header.features
    if not set(features) <= SELF_DETERMINED:
        raise ValueError(f"{policy} reads {','.join(features)}: its path depends on the run, not only on its choices")
    model, levels, actions, index = header.load_model(), header.levels, header.actions, feature_index(features)
    n, every, plan = recipe["num_patches"], recipe["decide_every"], recipe["references"][0]["steps"]
    obs = np.zeros(len(PROGRESS_FEATURES), dtype=np.float32)
    kept_sum, path = 0.0, []
    for j in range(int(np.ceil(HORIZON * plan / every))):
        obs[BUDGET] = j * every / plan
        obs[KEPT_SO_FAR] = kept_sum / j if j else 1.0  # a fresh run reports everything kept
        q = None
        if recipe.get("algorithm") == "dqn":
            with torch.no_grad():
                q = model.q_net(torch.as_tensor(obs[index][None])).numpy()[0]
            action = int(np.argmax(q))
        else:
            action = int(model.predict(obs[index], deterministic=True)[0])
        k = count_for(played_level(action, obs, levels, actions), levels, n)
        path.append({"budget_done": round(float(obs[BUDGET]), 3), "q": q, "count": k})
        kept_sum += k / n
        obs[LAST_KEPT] = k / n
    return header, path


def credit(policy: Path) -> dict:
    header, path = greedy_path(policy)
    recipe = header.recipe
    if recipe.get("algorithm") != "dqn":
        raise ValueError(f"{policy} is not a DQN: no Q-values to read")
    actions, levels, n = header.actions, recipe["levels"], recipe["num_patches"]
    per_level = (n / levels) * recipe["decide_every"] / (recipe["references"][0]["steps"] * (recipe["fixed_cost"] + n))
    rows = []
    for step in path:
        q = step["q"]
        if actions == "levels":
            slope = float(np.polyfit(np.arange(levels), q, 1)[0])
        else:
            slope = float(q[LEVEL_STEPS.index(1)] - q[LEVEL_STEPS.index(0)])
        rows.append({"budget_done": step["budget_done"], "count": step["count"], "q_per_level": slope,
                     "future_per_level": slope + per_level})
    return {"policy": str(policy), "actions": actions, "observe": list(header.features),
            "cost_per_level": per_level, "path": rows}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("policies", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    results = [credit(path) for path in args.policies]
    lines = []
    for r in results:
        lines += [f"### {r['policy']} (actions {r['actions']}, observe {','.join(r['observe'])})", "",
                  f"one level more costs {r['cost_per_level']:.4f} now", "",
                  "| budget_done | greedy count | Q per level more | future per level (Q + cost now) |",
                  "|---|---|---|---|"]
        lines += [f"| {row['budget_done']:.2f} | {row['count']} | {row['q_per_level']:+.4f} | "
                  f"{row['future_per_level']:+.4f} |" for row in r["path"]]
        lines.append("")
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "q_credit.json", results)
    atomic_write(args.out / "q_credit.md", lambda tmp: tmp.write_text("\n".join(lines)))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

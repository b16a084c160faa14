"""How much of a proxy run's score is the seed, and how much is the seed's draw for this
schedule? Reads the committed proxy sweeps (each schedule scored on the same held-out proxy
seeds) and splits the scores two ways (schedule + seed + the rest, least squares):

- the seed's SD: what `--baseline-count` takes out of a DQN's return (one constant per seed);
- the rest (schedule x seed interaction, with the checks' rounding to a twentieth): what it
  cannot take out, the noise left on every run's return;
- evolved's climb against the proxy's best step, paired by seed: its mean gap, the SD of the
  paired differences, and the paired runs that put the gap two standard errors from zero,
  n = (2 SD / gap)^2: how many runs it takes just to tell those two schedules apart.

    python reports/keeprate-time-v6-2026-12-07/noise_parts.py --out reports/keeprate-time-v6-2026-12-07/noise-parts
"""
import argparse
import json
from pathlib import Path

import numpy as np

from patchenv.atomic import atomic_write, atomic_write_json

V4 = Path("reports/keeprate-time-v4-2026-12-07")
V5 = Path("reports/keeprate-time-v5-2026-12-07")
STEP = "step 8->40 at 0.7"


def sweep_scores(files) -> dict:
    """{schedule: {seed: score}} over step_sweep.json files."""
    scores: dict = {}
    for f in files:
        d = json.loads(Path(f).read_text())
        for name, values in d["scores"].items():
            for seed, x in zip(d["seeds"], values):
                scores.setdefault(name, {})[seed] = x
    return scores


def ten_epoch_scores() -> dict:
    scores = sweep_scores([V4 / "step-sweep/step_sweep.json", V5 / "fixed-target-proxy/h-ten-epoch-proxy/step_sweep.json"])
    # evolved on seeds 2000-2002 of the 10-epoch proxy: the reaction check's run beside a DQN
    reaction = json.loads((V4 / "dqn-baseline16/reaction.json").read_text())
    for run in reaction["runs"]["evolved"]:
        scores.setdefault("evolved", {})[run["seed"]] = run["score"]
    return scores


def fixed_target_scores() -> dict:
    return sweep_scores(sorted((V5 / "fixed-target-proxy").glob("[a-g]/step_sweep.json")))


def parts(scores: dict) -> dict:
    """The seed's SD and the interaction's SD over the schedules scored on every common seed
    (`constant 64` left out: it never reaches early, so its row is the miss's scale), and
    evolved against the step, paired on the seeds both have."""
    rows = {k: v for k, v in scores.items() if k != "constant 64"}
    seeds = sorted(set.intersection(*(set(v) for v in rows.values())))
    full = [k for k in rows if all(s in rows[k] for s in seeds)]
    x = np.array([[rows[k][s] for s in seeds] for k in full])
    resid = x - x.mean(1, keepdims=True) - x.mean(0, keepdims=True) + x.mean()
    dof = (x.shape[0] - 1) * (x.shape[1] - 1)
    paired = sorted(set(scores["evolved"]) & set(scores[STEP]))
    diff = np.array([scores[STEP][s] - scores["evolved"][s] for s in paired])
    gap, sd = float(diff.mean()), float(diff.std(ddof=1))
    return {"schedules": full, "seeds": seeds, "seed_sd": float(x.mean(0).std(ddof=1)),
            "interaction_sd": float(np.sqrt((resid ** 2).sum() / dof)), "dof": dof,
            "paired_seeds": paired, "evolved": [scores["evolved"][s] for s in paired],
            "step": [scores[STEP][s] for s in paired], "gap": gap, "diff_sd": sd,
            "runs_to_separate": float((2 * sd / gap) ** 2) if gap > 0 else None}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    result = {"10-epoch proxy (target: the reference's final accuracy)": parts(ten_epoch_scores()),
              "fixed-target proxy (0.79, plan 25 epochs)": parts(fixed_target_scores())}
    lines = ["| proxy | schedules x seeds | seed SD | interaction SD | evolved | step to 40 at 0.7 | gap (paired) "
             "| SD of paired gaps | paired runs to tell them apart (2 SE) |", "|---" * 9 + "|"]
    for name, r in result.items():
        lines.append(f"| {name} | {len(r['schedules'])} x {len(r['seeds'])} | {r['seed_sd']:.3f} | "
                     f"{r['interaction_sd']:.3f} | {np.mean(r['evolved']):.3f} | {np.mean(r['step']):.3f} | "
                     f"{r['gap']:.3f} ({len(r['paired_seeds'])} seeds) | {r['diff_sd']:.3f} | "
                     f"{r['runs_to_separate']:.0f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "noise_parts.json", result)
    atomic_write(args.out / "noise_parts.md", lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Issue 35's two targets, seed by seed, from one interleaved sweep of `all`, the SB3 DQN
(``keeprate``) and ``evolved:objective=time`` on ``fmnist-long``.

- Target 1, for each learned selector: reached the target, time to target <= 0.50x `all`'s,
  FLOPs to target <= 0.40x `all`'s, test accuracy when it stops >= `all`'s - 0.5 points.
- Target 2, for the DQN: reached the target within 1.15x evolved's time to target.

Every ratio is against the run of the same seed in the same process (the suite interleaves
its runs epoch by epoch), so a clock ratio compares runs made at the same time.

    python reports/keeprate-time-v9-2026-12-07/targets.py RESULTS_JSON --out DIR

Writes targets.json, targets.md and targets.png (the seeds against the first target's box).
"""
import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.common import pyplot, save_figure
from patchenv.atomic import atomic_write_json, atomic_write_text

LEARNED = {"keeprate": "DQN", "evolved": "evolved"}  # name prefix -> short name
TIME_BAR, FLOPS_BAR, TEST_BAR, VS_EVOLVED_BAR = 0.50, 0.40, -0.005, 1.15


def by_seed(runs: list[dict]) -> dict[int, dict[str, dict]]:
    """{seed: {"all" | "DQN" | "evolved": run}}; other selectors are left out."""
    seeds: dict[int, dict[str, dict]] = {}
    for r in runs:
        name = "all" if r["selector"] == "all" else next(
            (short for prefix, short in LEARNED.items() if r["selector"].startswith(prefix + ":")), None)
        if name is not None:
            seeds.setdefault(r["seed"], {})[name] = r
    return seeds


def rows(runs: list[dict]) -> list[dict]:
    out = []
    for seed, named in sorted(by_seed(runs).items()):
        ref = named.get("all")
        if ref is None or not ref.get("time_to_target_s"):
            continue
        row = {"seed": seed, "all_time_s": ref["time_to_target_s"], "all_test": ref["test_accuracy"]}
        for name in LEARNED.values():
            r = named.get(name)
            if r is None:
                continue
            reached = bool(r.get("time_to_target_s"))
            row[name] = {
                "reached": reached,
                "time_s": r.get("time_to_target_s"),
                "time_ratio": r["time_to_target_s"] / ref["time_to_target_s"] if reached else None,
                "flops_ratio": r["flops_to_target"] / ref["flops_to_target"] if reached else None,
                "test_delta_points": 100 * (r["test_accuracy"] - ref["test_accuracy"]),
            }
            row[name]["target1"] = bool(reached and row[name]["time_ratio"] <= TIME_BAR
                                        and row[name]["flops_ratio"] <= FLOPS_BAR
                                        and r["test_accuracy"] - ref["test_accuracy"] >= TEST_BAR)
        if "DQN" in row and "evolved" in row and row["DQN"]["reached"] and row["evolved"]["reached"]:
            row["dqn_vs_evolved_time"] = row["DQN"]["time_s"] / row["evolved"]["time_s"]
            row["target2"] = row["dqn_vs_evolved_time"] <= VS_EVOLVED_BAR
        out.append(row)
    return out


def table(rows_: list[dict]) -> list[str]:
    def cell(r: dict, name: str) -> str:
        x = r.get(name)
        if x is None:
            return "- | - | - | -"
        if not x["reached"]:
            return f"not reached | - | {x['test_delta_points']:+.2f} | no"
        return (f"{x['time_ratio']:.2f} | {x['flops_ratio']:.2f} | {x['test_delta_points']:+.2f} | "
                f"{'yes' if x['target1'] else 'no'}")

    lines = ["| seed | all: s to target | DQN time / all's | DQN FLOPs / all's | DQN Δ test (points) | DQN T1 "
             "| evolved time / all's | evolved FLOPs / all's | evolved Δ test | evolved T1 | DQN time / evolved's "
             "| T2 |", "|---" * 12 + "|"]
    for r in rows_:
        vs = r.get("dqn_vs_evolved_time")
        lines.append(f"| {r['seed']} | {r['all_time_s']:.0f} | {cell(r, 'DQN')} | {cell(r, 'evolved')} | "
                     + (f"{vs:.2f} | {'yes' if r['target2'] else 'no'} |" if vs is not None else "- | - |"))
    for name in LEARNED.values():
        got = [r[name] for r in rows_ if name in r]
        if got:
            reached = [x for x in got if x["reached"]]
            mean = {k: float(np.mean([x[k] for x in reached])) if reached else float("nan")
                    for k in ("time_ratio", "flops_ratio")}
            lines.append(f"\n{name}: target 1 on {sum(x['target1'] for x in got)}/{len(got)} seeds; reached the "
                         f"target on {len(reached)}/{len(got)}; mean time {mean['time_ratio']:.2f}x, FLOPs "
                         f"{mean['flops_ratio']:.2f}x all's; mean Δ test "
                         f"{np.mean([x['test_delta_points'] for x in got]):+.2f} points")
    t2 = [r["target2"] for r in rows_ if "target2" in r]
    if t2:
        lines.append(f"\nDQN within {VS_EVOLVED_BAR}x evolved's time to target: {sum(t2)}/{len(t2)} seeds")
    return lines


def plot(rows_: list[dict], path: Path) -> None:
    """Each learned selector's seeds in the (FLOPs / all's, time / all's) plane, the first
    target's box shaded: a point inside it met the target's time and FLOPs parts."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.add_patch(plt.Rectangle((0, 0), FLOPS_BAR, TIME_BAR, color="tab:green", alpha=0.12,
                               label=f"target 1: <= {FLOPS_BAR}x FLOPs and <= {TIME_BAR}x time"))
    for name, marker in zip(LEARNED.values(), "os"):
        pts = [(r["seed"], r[name]) for r in rows_ if name in r and r[name]["reached"]]
        ax.scatter([x["flops_ratio"] for _, x in pts], [x["time_ratio"] for _, x in pts], marker=marker, label=name)
        for seed, x in pts:
            mark = "" if x["test_delta_points"] >= 100 * TEST_BAR else " (test)"
            ax.annotate(f"{seed}{mark}", (x["flops_ratio"], x["time_ratio"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    ax.set(xlim=(0, 0.6), ylim=(0, 0.8), xlabel="FLOPs to target / all's, same seed",
           ylabel="time to target / all's, same run",
           title="fmnist-long, interleaved (seed marked; '(test)': test > 0.5 points below all's)")
    ax.title.set_fontsize(8)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("results", type=Path, help="a benchmarks.compare_selectors results.json")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    found = rows(json.loads(args.results.read_text())["runs"])
    if not found:
        raise SystemExit(f"{args.results}: no seed where all reached the target")
    lines = [f"Issue 35's targets per seed ({args.results})", ""] + table(found) + [""]
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "targets.json", {"results": str(args.results), "rows": found})
    atomic_write_text(args.out / "targets.md", "\n".join(lines))
    plot(found, args.out / "targets.png")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

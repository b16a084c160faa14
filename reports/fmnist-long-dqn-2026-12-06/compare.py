"""The DQN time policy on fmnist-long beside evolved:objective=time (run together,
interleaved, in this sweep), against the five-seed sweep's `all` (run earlier; its rows were
reused through --resume, so its clock is from another session, its FLOPs exact):

    python reports/fmnist-long-dqn-2026-12-06/compare.py results/fmnist-long-dqn/seeds-0-2 \
        results/fmnist-long-dqn/seed-2 results/fmnist-long-dqn/seeds-3-4 \
        --earlier results/fmnist-long/all-seeds --out reports/fmnist-long-dqn-2026-12-06

Writes compare.md (per seed and summary) and compare.json. ``--selector`` (default: the
shipped DQN policy) is compared with ``--against`` (default: evolved:objective=time) run
beside it; the DQN reading budget_done alone was compared the same way:

    python reports/fmnist-long-dqn-2026-12-06/compare.py results/keeprate-v3-suite/seeds-0-2 \
        results/keeprate-v3-suite/seeds-3-4 --earlier results/fmnist-long/all-seeds \
        --selector keeprate:objective=time:policy=agents/policies/keeprate-time-dqn-budget-fmnist.zip \
        --out reports/keeprate-time-v3-2026-12-06/suite
"""
import argparse
import json
import statistics
from pathlib import Path

EVOLVED = "evolved:objective=time"
DQN = "keeprate:objective=time:policy=agents/policies/keeprate-time-dqn-fmnist.zip"


def rows(folder: Path) -> list[dict]:
    return json.loads((folder / "results.json").read_text())["runs"]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("parts", nargs="+", type=Path)
    p.add_argument("--earlier", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--selector", default=DQN)
    p.add_argument("--against", default=EVOLVED)
    args = p.parse_args()
    selector, against = args.selector, args.against
    now = {(r["selector"], r["seed"]): r for part in args.parts for r in rows(part)}
    then = {(r["selector"], r["seed"]): r for r in rows(args.earlier)}
    seeds = sorted({seed for (sel, seed) in now if sel == selector})
    per_seed = []
    for s in seeds:
        a, e, d, e0 = then[("all", s)], now[(against, s)], now[(selector, s)], then[(EVOLVED, s)]
        per_seed.append({
            "seed": s, "all_time_s": a["time_to_target_s"], "all_flops": a["flops_to_target"],
            "evolved_time_s": e["time_to_target_s"], "dqn_time_s": d["time_to_target_s"],
            "dqn_over_evolved_time": d["time_to_target_s"] / e["time_to_target_s"],
            "dqn_over_evolved_flops": d["flops_to_target"] / e["flops_to_target"],
            "evolved_flops_vs_all": e["flops_to_target"] / a["flops_to_target"],
            "dqn_flops_vs_all": d["flops_to_target"] / a["flops_to_target"],
            "evolved_time_vs_earlier_all": e["time_to_target_s"] / a["time_to_target_s"],
            "dqn_time_vs_earlier_all": d["time_to_target_s"] / a["time_to_target_s"],
            "evolved_same_flops_as_earlier": e["flops_to_target"] == e0["flops_to_target"],
            "evolved_time_now_over_earlier": e["time_to_target_s"] / e0["time_to_target_s"],
            "test_all": a["test_accuracy"], "test_evolved": e["test_accuracy"], "test_dqn": d["test_accuracy"],
            "dqn_reached": d["time_to_target_s"] is not None, "dqn_mean_kept": d["mean_patches_kept"],
        })
    keys = ["dqn_over_evolved_time", "dqn_over_evolved_flops", "evolved_flops_vs_all", "dqn_flops_vs_all",
            "evolved_time_vs_earlier_all", "dqn_time_vs_earlier_all", "evolved_time_now_over_earlier"]
    summary = {k: {"mean": statistics.mean(r[k] for r in per_seed), "min": min(r[k] for r in per_seed),
                   "max": max(r[k] for r in per_seed)} for k in keys}
    summary["dqn_within_1.15x_evolved_time"] = sum(r["dqn_over_evolved_time"] <= 1.15 for r in per_seed)
    summary["seeds"] = len(per_seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.json").write_text(json.dumps({"per_seed": per_seed, "summary": summary}, indent=2))
    lines = ["| seed | all s (earlier) | evolved s | DQN s | DQN / evolved time | DQN / evolved FLOPs | "
             "evolved FLOPs / all's | DQN FLOPs / all's | DQN mean kept | test % all / evolved / DQN | "
             "evolved FLOPs as earlier | evolved time now / earlier |",
             "|" + "---|" * 12]
    for r in per_seed:
        lines.append(f"| {r['seed']} | {r['all_time_s']:.0f} | {r['evolved_time_s']:.0f} | {r['dqn_time_s']:.0f} | "
                     f"{r['dqn_over_evolved_time']:.2f} | {r['dqn_over_evolved_flops']:.2f} | "
                     f"{r['evolved_flops_vs_all']:.3f} | {r['dqn_flops_vs_all']:.3f} | {r['dqn_mean_kept']:.1f} | "
                     f"{100 * r['test_all']:.2f} / {100 * r['test_evolved']:.2f} / {100 * r['test_dqn']:.2f} | "
                     f"{'yes' if r['evolved_same_flops_as_earlier'] else 'no'} | "
                     f"{r['evolved_time_now_over_earlier']:.2f} |")
    lines.append("")
    lines += [f"- {k}: mean {v['mean']:.3f} ({v['min']:.3f}-{v['max']:.3f})" for k, v in summary.items()
              if isinstance(v, dict)]
    lines.append(f"- DQN within 1.15x evolved's time: {summary['dqn_within_1.15x_evolved_time']}/{len(per_seed)}")
    (args.out / "compare.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How far does a seed's time to target move for a change that is not a different policy?
Each --variant's runs on fmnist-long, seed by seed, over evolved:objective=time's on the same
seed (--evolved: a sweep holding its rows), in wall clock and in FLOPs to target (exact, so
free of the machine's load), and how many seeds fall within --band (the issue's 1.15x):

    python reports/keeprate-time-v5-2026-12-07/noise_floor.py --evolved results/fmnist-long/all-seeds \
        --variant "switch +0.01=results/v5/noise=evolved:objective=time:policy=reports/.../evolved-time-switch+0.01.json" \
        --out reports/keeprate-time-v5-2026-12-07/noise-floor

A variant is LABEL=FOLDER=SELECTOR (FOLDER: a sweep's --out holding results.json); the
variants are pooled into the share of seeds within the band. --context (the same form) adds
rows that are shown but not pooled (other policies, for scale). Writes
noise_floor.json, noise_floor.md and noise_floor.png into --out.
"""
import argparse
import json
import math
from pathlib import Path

import numpy as np

from patchenv.atomic import atomic_write, atomic_write_json

EVOLVED = "evolved:objective=time"


def rows(folder: Path, selector: str) -> dict:
    runs = json.loads((folder / "results.json").read_text())["runs"]
    return {r["seed"]: r for r in runs if r["selector"] == selector}


def ratio(a, b):
    return None if a is None or b is None else a / b


def within_at_least(p: float, k: int, n: int) -> float:
    """P(at least k of n seeds within the band) when each is, independently, with probability p."""
    return sum(math.comb(n, j) * p ** j * (1 - p) ** (n - j) for j in range(k, n + 1))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--evolved", type=Path, required=True)
    p.add_argument("--variant", action="append", required=True, help="LABEL=FOLDER=SELECTOR")
    p.add_argument("--context", action="append", default=[], help="LABEL=FOLDER=SELECTOR, shown, not pooled")
    p.add_argument("--band", type=float, default=1.15)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    evolved = rows(args.evolved, EVOLVED)
    table, pooled = {}, []
    for spec in args.variant + args.context:
        label, folder, selector = spec.split("=", 2)
        mine = rows(Path(folder), selector)
        per_seed = []
        for seed in sorted(set(mine) & set(evolved)):
            m, e = mine[seed], evolved[seed]
            per_seed.append({"seed": seed, "time_ratio": ratio(m["time_to_target_s"], e["time_to_target_s"]),
                             "flops_ratio": ratio(m["flops_to_target"], e["flops_to_target"]),
                             "reached": m["time_to_target_s"] is not None})
        times = [r["time_ratio"] for r in per_seed if r["time_ratio"] is not None]
        within = sum(t <= args.band for t in times)  # the test: at most band x evolved's time
        table[label] = {"folder": folder, "selector": selector, "per_seed": per_seed, "within_band": within,
                        "seeds": len(per_seed), "mean_time_ratio": float(np.mean(times)) if times else None,
                        "mean_flops_ratio": float(np.mean([r["flops_ratio"] for r in per_seed
                                                           if r["flops_ratio"] is not None])),
                        "pooled": spec in args.variant}
        if spec in args.variant:
            pooled += times
    p_within = sum(t <= args.band for t in pooled) / len(pooled)
    record = {"evolved": str(args.evolved), "band": args.band, "variants": table,
              "pooled": {"seed_pairs": len(pooled), "share_within_band": p_within,
                         "p_at_least_4_of_5": within_at_least(p_within, 4, 5)}}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "noise_floor.json", record)
    seeds = [r["seed"] for r in next(iter(table.values()))["per_seed"]]
    lines = [f"Per seed: the variant's time to target / evolved's (FLOPs to target in brackets); at most "
             f"{args.band}x, the issue's test, marked *.", "",
             "| variant | " + " | ".join(f"seed {s}" for s in seeds) + f" | <= {args.band}x | mean time | mean FLOPs |",
             "|---" * (len(seeds) + 4) + "|"]
    for label, v in table.items():
        cells = [("-" if r["time_ratio"] is None else
                  f"{r['time_ratio']:.2f}{'*' if r['time_ratio'] <= args.band else ''} ({r['flops_ratio']:.2f})")
                 for r in v["per_seed"]]
        lines.append(f"| {label} | " + " | ".join(cells)
                     + f" | {v['within_band']}/{v['seeds']} | {v['mean_time_ratio']:.2f} | {v['mean_flops_ratio']:.2f} |")
    lines += ["", f"Pooled: {sum(t <= args.band for t in pooled)}/{len(pooled)} seed pairs within {args.band}x; "
              f"if each seed were within with that probability, 4/5 or more would happen "
              f"{record['pooled']['p_at_least_4_of_5']:.0%} of the time."]
    atomic_write(args.out / "noise_floor.md", lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))
    plot(table, args.band, args.out / "noise_floor.png")
    print("\n".join(lines))
    return 0


def plot(table: dict, band: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for i, (label, v) in enumerate(table.items()):
        pts = [(r["seed"], r["time_ratio"]) for r in v["per_seed"] if r["time_ratio"] is not None]
        ax.scatter([i + (s - 2) * 0.06 for s, _ in pts], [t for _, t in pts], s=22)
        for s, t in pts:
            ax.annotate(str(s), (i + (s - 2) * 0.06, t), fontsize=6, xytext=(2, 2), textcoords="offset points")
    ax.axhspan(0, band, color="tab:green", alpha=0.12, label=f"at most {band}x evolved's time (the target)")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xticks(range(len(table)), list(table), fontsize=8, rotation=10)
    ax.set_ylim(0.6, max(2.0, max(t for v in table.values() for r in v["per_seed"]
                                  for t in [r["time_ratio"]] if t is not None) + 0.1))
    ax.set(ylabel="time to target / evolved's, same seed", title="fmnist-long, seeds 0-4 (seed numbers marked)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())

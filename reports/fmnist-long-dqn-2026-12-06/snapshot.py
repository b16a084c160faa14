"""Where the DQN-on-fmnist-long sweep's runs stand, finished or not, from each run's own
metrics.json, beside the five-seed sweep's runs of the same seed (`all`'s cost to target,
and `evolved:objective=time`'s run then, epoch by epoch: does the rerun repeat it?):

    python reports/fmnist-long-dqn-2026-12-06/snapshot.py results/fmnist-long-dqn/seeds-0-2 \
        results/fmnist-long-dqn/seed-2 results/fmnist-long-dqn/seeds-3-4 \
        --earlier reports/fmnist-long-2026-12-06/final/runs --out reports/fmnist-long-dqn-2026-12-06
"""
import argparse
import json
from pathlib import Path

TARGET = 0.8726


def read(folder: Path) -> dict:
    metrics = json.loads((folder / "metrics.json").read_text())
    rows = sorted(metrics["epochs"] + metrics.get("checks", []), key=lambda r: r["global_step"])
    reached = next((r for r in rows if r["val_accuracy"] >= TARGET - 1e-12), None)
    epochs = metrics["epochs"]
    return {"selector": metrics["meta"]["config"]["agent"], "seed": metrics["meta"]["config"]["seed"],
            "status": metrics["meta"]["status"], "epochs": epochs[-1]["epoch"] if epochs else 0,
            "best_val": max((r["val_accuracy"] for r in rows), default=0.0),
            "kept": [round(r["mean_patches_kept"]) for r in epochs],
            "val": [r["val_accuracy"] for r in epochs],
            "time_s": (reached or epochs[-1])["train_time_s"] if epochs else 0.0,
            "flops": (reached or epochs[-1])["train_flops"] if epochs else 0.0,
            "reached": reached is not None}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("parts", nargs="+", type=Path)
    p.add_argument("--earlier", type=Path, required=True, help="the five-seed sweep's run folders")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    earlier = {(r["selector"], r["seed"]): r for r in map(read, sorted(args.earlier.iterdir()))}
    now = [read(f) for part in args.parts for f in sorted((part / "runs").iterdir())]
    lines = ["| seed | selector | status | epochs | best val % | time s | FLOPs / all's to target | "
             "time / all's to target (all's clock from the earlier sweep) | same val curve as the earlier run |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(now, key=lambda r: (r["seed"], r["selector"])):
        ref = earlier[("all", r["seed"])]
        then = earlier.get((r["selector"], r["seed"]))
        same = "-"
        if then is not None:
            n = min(len(then["val"]), len(r["val"]))
            same = f"{'yes' if then['val'][:n] == r['val'][:n] else 'no'} ({n} epochs)"
        ratio = (lambda a, b: f"{a / b:.3f}") if r["reached"] else (lambda a, b: f"({a / b:.3f} so far)")
        name = "DQN policy" if r["selector"].startswith("keeprate") else r["selector"]
        lines.append(f"| {r['seed']} | {name} | {r['status']}{' (target)' if r['reached'] else ''} | {r['epochs']} | "
                     f"{100 * r['best_val']:.2f} | {r['time_s']:.0f} | {ratio(r['flops'], ref['flops'])} | "
                     f"{ratio(r['time_s'], ref['time_s'])} | {same} |")
    lines.append("")
    lines.append("Mean patches kept per epoch, the DQN policy's runs:")
    lines.append("")
    for r in sorted(now, key=lambda r: r["seed"]):
        if r["selector"].startswith("keeprate"):
            lines.append(f"- seed {r['seed']}: {r['kept']}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "snapshot.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

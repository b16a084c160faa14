"""Where the fmnist-long sweep's runs stand, finished or not, read from each run's own
metrics.json: a Markdown table (status, epochs, best validation accuracy, training time
and FLOPs so far or to the target, each over `all`'s on the same seed when both reached
it) and a plot of validation accuracy against training time and FLOPs.

    python reports/fmnist-long-2026-12-06/progress.py results/fmnist-long/seeds-0-2 results/fmnist-long/seeds-3-4 \
        --out reports/fmnist-long-2026-12-06
"""
import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TARGET = 0.8726


def read_runs(parts: list[Path]) -> list[dict]:
    runs = []
    for part in parts:
        for folder in sorted((part / "runs").iterdir()):
            metrics = json.loads((folder / "metrics.json").read_text())
            config = metrics["meta"]["config"]
            rows = sorted(metrics["epochs"] + metrics.get("checks", []), key=lambda r: r["global_step"])
            reached = next((r for r in rows if r["val_accuracy"] >= TARGET - 1e-12), None)
            last = metrics["epochs"][-1] if metrics["epochs"] else {}
            runs.append({"selector": config["agent"], "seed": config["seed"], "status": metrics["meta"]["status"],
                         "epochs": last.get("epoch", 0), "best_val": max((r["val_accuracy"] for r in rows), default=None),
                         "time_s": last.get("train_time_s", 0.0), "flops": last.get("train_flops", 0),
                         "reached": reached, "curve": metrics["epochs"],
                         "test_accuracy": (metrics.get("summary") or {}).get("test_accuracy")})
    return runs


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("parts", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    runs = read_runs(args.parts)
    ref = {r["seed"]: r for r in runs if r["selector"] == "all"}
    lines = ["| seed | selector | status | epochs | best val % | mean kept | time s | time / all's | FLOPs / all's | "
             "test % at stop |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: (r["seed"], r["selector"] != "all", r["selector"])):
        a = ref[r["seed"]]
        both = r["reached"] is not None and a["reached"] is not None
        kept = (sum(c["mean_patches_kept"] * 1 for c in r["curve"]) / len(r["curve"])) if r["curve"] else None
        lines.append(
            f"| {r['seed']} | {r['selector']} | {r['status']}{' (target)' if r['reached'] else ''} | "
            f"{r['epochs']} | {100 * r['best_val']:.2f} | {kept:.1f} | {r['time_s']:.0f} | "
            + (f"{r['reached']['train_time_s'] / a['reached']['train_time_s']:.2f} | "
               f"{r['reached']['train_flops'] / a['reached']['train_flops']:.2f} | " if both else "- | - | ")
            + (f"{100 * r['test_accuracy']:.2f} |" if r["test_accuracy"] is not None and r["reached"] else "- |"))
    (args.out / "progress.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    selectors = list(dict.fromkeys(r["selector"] for r in runs))
    seeds = sorted(ref)
    fig, axes = plt.subplots(2, len(seeds), figsize=(4 * len(seeds), 7), squeeze=False)
    colors = dict(zip(selectors, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for j, seed in enumerate(seeds):
        for r in runs:
            if r["seed"] != seed or not r["curve"]:
                continue
            acc = [100 * c["val_accuracy"] for c in r["curve"]]
            axes[0][j].plot([c["train_time_s"] for c in r["curve"]], acc, color=colors[r["selector"]], label=r["selector"])
            axes[1][j].plot([c["train_flops"] / 1e12 for c in r["curve"]], acc, color=colors[r["selector"]])
        for i, x in enumerate(("training time s", "training TFLOPs")):
            ax = axes[i][j]
            ax.axhline(100 * TARGET, color="grey", ls="--", lw=0.8)
            ax.set_ylim(70, 90)
            ax.set_xlabel(x)
            ax.set_title(f"seed {seed}")
        axes[0][j].set_ylabel("validation accuracy %")
        axes[1][j].set_ylabel("validation accuracy %")
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"fmnist-long: validation accuracy against cost (target {100 * TARGET:.2f}%, dashed)")
    fig.tight_layout()
    fig.savefig(args.out / "progress.png", dpi=110)


if __name__ == "__main__":
    main()

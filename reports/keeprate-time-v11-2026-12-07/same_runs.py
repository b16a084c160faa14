"""Two sweeps of the same suite, run for run: whether each (selector, seed) made the same
steps, FLOPs and accuracies, and how their clocks compare (time to target over `all`'s of
the same seed and sweep).

    python reports/keeprate-time-v11-2026-12-07/same_runs.py --now RESULTS_JSON --then RESULTS_JSON \\
        --out DIR

Writes same_runs.json and same_runs.md: one row per run of ``--now`` that ``--then`` also holds.
"""
import argparse
import json
from pathlib import Path

from patchenv.atomic import atomic_write_json, atomic_write_text

EXACT = ("steps", "epochs", "flops_to_target", "tokens_to_target")  # counts: equal or not
MEASURED = ("val_accuracy", "test_accuracy")  # accuracies: the difference, in images of the split


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--now", required=True)
    p.add_argument("--then", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    now, then = (json.loads(Path(f).read_text())["runs"] for f in (args.now, args.then))
    then_by = {(r["selector"], int(r["seed"])): r for r in then}
    rows = []
    for r in sorted(now, key=lambda r: (int(r["seed"]), r["selector"] != "all", r["selector"])):
        old = then_by.get((r["selector"], int(r["seed"])))
        if old is None:
            continue
        rows.append({"selector": r["selector"], "seed": int(r["seed"]),
                     "equal": {k: r.get(k) == old.get(k) for k in EXACT},
                     "accuracy_now": {k: r[k] for k in MEASURED}, "accuracy_then": {k: old[k] for k in MEASURED},
                     "time_to_target_s": [r.get("time_to_target_s"), old.get("time_to_target_s")],
                     "time_vs_all": [r.get("time_vs_all"), old.get("time_vs_all")],
                     "flops_vs_all": [r.get("flops_vs_all"), old.get("flops_vs_all")]})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "same_runs.json", {"now": args.now, "then": args.then, "rows": rows})
    lines = [f"# Run for run: `{args.now}` (now) against `{args.then}` (then)", "",
             "| seed | selector | steps, epochs, FLOPs, tokens equal | val acc now / then | test acc now / then "
             "| time to target s, now / then | time / all's, now / then | FLOPs / all's |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        eq = "yes" if all(row["equal"].values()) else ", ".join(k for k, v in row["equal"].items() if not v) + " differ"
        a, b = row["accuracy_now"], row["accuracy_then"]
        t, tv = row["time_to_target_s"], row["time_vs_all"]
        lines.append(f"| {row['seed']} | {row['selector'].split(':policy=')[0]} | {eq} | "
                     f"{100 * a['val_accuracy']:.3f} / {100 * b['val_accuracy']:.3f} | "
                     f"{100 * a['test_accuracy']:.2f} / {100 * b['test_accuracy']:.2f} | {t[0]:.0f} / {t[1]:.0f} | "
                     f"{tv[0]:.3f} / {tv[1]:.3f} | {row['flops_vs_all'][0]:.4f} |")
    text = "\n".join(lines) + "\n"
    atomic_write_text(out / "same_runs.md", text)
    print(text)


if __name__ == "__main__":
    main()

"""How much a run's test accuracy at the target moves by chance, so that a per-seed bar on it
(issue 35: within 0.5 points of `all`'s) can be read against that spread.

Every run of ``fmnist-long`` stops on its first validation check at or above the target, so
runs that stop are at nearly the same validation accuracy; what is left of their test
accuracies' spread is the test split's sampling and the model's draw. This pools every
distinct run (selector, seed, test accuracy) that reached the target in the given
results.json files, reports the spread of its test accuracy and of test - val, and, for two
runs drawn independently from that spread (a selector as good as `all`), the chance that one
is 0.5 points or more below the other on one seed and on every one of five seeds.

    python reports/keeprate-time-v9-2026-12-07/test_noise.py RESULTS_JSON ... --out DIR
"""
import argparse
import json
import math
from pathlib import Path

import numpy as np

from patchenv.atomic import atomic_write_json, atomic_write_text

BAR_POINTS, SEEDS = 0.5, 5


def runs_at_target(paths: list[Path]) -> dict[tuple, tuple[float, float]]:
    """{(selector, seed, test accuracy): (val, test)} over the files, each run once (reports
    copy runs from one sweep into another)."""
    seen = {}
    for path in paths:
        for r in json.loads(path.read_text())["runs"]:
            if r.get("time_to_target_s"):
                seen[(r["selector"], r["seed"], round(r["test_accuracy"], 6))] = (r["val_accuracy"], r["test_accuracy"])
    return seen


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("results", type=Path, nargs="+")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    runs = runs_at_target(args.results)
    if len(runs) < 3:
        raise SystemExit(f"expected at least 3 runs that reached the target, found {len(runs)}")
    val, test = (100 * np.array(x) for x in zip(*runs.values()))
    sd_test, sd_gap = float(test.std(ddof=1)), float((test - val).std(ddof=1))
    sd_pair = math.sqrt(2) * sd_test  # the difference of two independent runs
    one_seed = 0.5 * math.erfc(BAR_POINTS / sd_pair / math.sqrt(2))  # P(N(0, sd_pair) <= -bar)
    record = {"files": [str(p) for p in args.results], "runs": len(runs), "val_mean": float(val.mean()),
              "test_mean": float(test.mean()), "test_sd_points": sd_test, "test_minus_val_sd_points": sd_gap,
              "pair_sd_points": sd_pair, "p_below_bar_one_seed": one_seed,
              f"p_within_bar_all_{SEEDS}_seeds": (1 - one_seed) ** SEEDS}
    lines = [f"{len(runs)} distinct runs that reached the target ({', '.join(str(p) for p in args.results)})", "",
             f"- validation accuracy at the stop: mean {val.mean():.2f}%",
             f"- test accuracy at the stop: mean {test.mean():.2f}%, sd {sd_test:.2f} points; test - val sd "
             f"{sd_gap:.2f} points",
             f"- two independent runs differ by sd {sd_pair:.2f} points; one is {BAR_POINTS} points or more below "
             f"the other with chance {one_seed:.2f} on a seed, and within the bar on all {SEEDS} seeds with chance "
             f"{(1 - one_seed) ** SEEDS:.2f}", ""]
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "test_noise.json", record)
    atomic_write_text(args.out / "test_noise.md", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

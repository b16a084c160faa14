"""Merge the two processes' sweeps (each interleaving whole seeds) into one folder and let
compare_selectors write the combined report from it (--resume with nothing left to run):

    python reports/fmnist-long-2026-12-06/merge.py results/fmnist-long/seeds-0-2 results/fmnist-long/seeds-3-4 \
        --out results/fmnist-long/all-seeds --seeds 0,1,2,3,4 [--selectors ...]
"""
import argparse
import sys
from pathlib import Path

from benchmarks import compare_selectors
from patchenv import checked_json


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("parts", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seeds", required=True)
    p.add_argument("--selectors", default=None)
    args = p.parse_args()
    parts = [checked_json.read(part / "results.json") for part in args.parts]
    runs = [r for part in parts for r in part["runs"]]
    meta = dict(parts[0]["meta"], merged_from=[str(part) for part in args.parts],
                argv=[part["meta"]["argv"] for part in parts])
    args.out.mkdir(parents=True, exist_ok=True)
    checked_json.write(args.out / "results.json", {"meta": meta, "runs": runs})
    extra = ["--selectors", args.selectors] if args.selectors else []
    return compare_selectors.main(["--suite", "fmnist-long", "--seeds", args.seeds, "--out", str(args.out),
                                   "--resume", "--no-progress", *extra])


if __name__ == "__main__":
    sys.exit(main())

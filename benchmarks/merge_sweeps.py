"""Merge sweeps run side by side into one report.

On a machine with a few cores, a long sweep runs fastest as several processes, each with
its own seeds and ``--out`` (one thread a run, one process a core):

    OMP_NUM_THREADS=1 python -m benchmarks.compare_selectors --suite fmnist-long --seeds 0,1,2 --out results/a &
    OMP_NUM_THREADS=1 python -m benchmarks.compare_selectors --suite fmnist-long --seeds 3,4 --out results/b
    python -m benchmarks.merge_sweeps results/a results/b --out results/all-seeds

The merged folder holds what one process running every seed would have written:
``results.json`` (every row; ratios against ``all`` recomputed per seed), ``results.csv``,
``results.md`` and the figures. Its meta names the parts (``merged_from``) and each part's
command (``argv``); the runs' own folders stay in the parts. Only finished sweeps with the
same configuration (data, model, budget, protocol, target; `benchmarks.sweep.results.COMPARABLE`)
and no run in common are merged; anything else is refused in one line, writing nothing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from benchmarks.compare_selectors import report
from benchmarks.sweep.results import config_difference, fill_eval_split, write_results
from patchenv import checked_json
from patchenv.atomic import WriteError
from patchenv.checks import one_line
from patchenv.cli.options import check_out
from patchenv.run import locked


def read_part(folder: Path, trust: bool) -> dict:
    """A finished sweep's results.json ({"meta", "runs"}), or a one-line ValueError."""
    path = folder / "results.json"
    if not path.is_file():
        raise ValueError(f"{folder} holds no sweep (no results.json)")
    try:
        part = checked_json.read(path, trust=trust)
        cfg, runs = part["meta"]["config"], part["runs"]
        if not isinstance(cfg, dict) or not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
            raise TypeError("its config or rows are not JSON objects")
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"cannot read {path} ({type(e).__name__}: {e})") from None
    status = part["meta"].get("status")
    if status != "complete":
        raise ValueError(f"{folder} is {status!r}, not complete: finish it first (its command plus --resume)")
    return part


def merge(parts: list[dict], names: list[str]) -> tuple[dict, dict, list[dict]]:
    """(cfg, meta, rows) of the sweeps `parts` (read by `read_part`; `names`: their folders)
    as one sweep: their selectors and seeds together, rows ordered by setting, seed and
    selector. Raises a one-line ValueError where they cannot be merged."""
    first = parts[0]["meta"]["config"]
    for name, part in zip(names[1:], parts[1:]):
        diff = config_difference(first, part["meta"]["config"])
        if diff:
            raise ValueError(f"{name} was run with another configuration than {names[0]} "
                             f"({', '.join(f'{k}: {a!r} against {b!r}' for k, (b, a) in diff.items())})")
    owner: dict = {}
    for name, part in zip(names, parts):
        for r in part["runs"]:
            key = (r.get("setting"), r["seed"], r["selector"])
            if key in owner:
                where = "" if key[0] is None else f" at {key[0]}"
                raise ValueError(f"{r['selector']} seed {r['seed']}{where} is in both {owner[key]} and {name}: "
                                 f"each run must come from one sweep")
            owner[key] = name
    selectors = list(dict.fromkeys(s for part in parts for s in part["meta"]["config"]["selectors"]))
    seeds = sorted({seed for part in parts for seed in part["meta"]["config"]["seeds"]})
    rows = [r for part in parts for r in part["runs"]]
    settings = list(dict.fromkeys(r.get("setting") for r in rows))
    rows.sort(key=lambda r: (settings.index(r.get("setting")), r["seed"], selectors.index(r["selector"])))
    cfg = dict(first, selectors=selectors, seeds=seeds)
    meta = dict(parts[0]["meta"], config=cfg, merged_from=names, argv=[part["meta"].get("argv") for part in parts])
    return cfg, meta, rows


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.merge_sweeps", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("parts", nargs="+", type=Path, help="the sweeps' --out folders, two or more")
    p.add_argument("--out", type=Path, required=True, help="the merged sweep's folder")
    p.add_argument("--overwrite", action="store_true", help="replace a merged sweep already in --out")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="read a results.json without a checksum (written by hand or by an older patchenv)")
    args = p.parse_args(argv)
    names = [str(part) for part in args.parts]
    try:
        if len(set(names)) < 2:
            raise ValueError(f"give two or more different sweep folders to merge, got {', '.join(names)}")
        if any(args.out.resolve() == part.resolve() for part in args.parts):
            raise ValueError(f"--out {args.out} is one of the parts: merge into another folder")
        check_out(args.out, "results.json", resume=False, overwrite=args.overwrite)
        cfg, meta, rows = merge([read_part(part, args.trust_checkpoint) for part in args.parts], names)
        cfg["out"] = str(args.out)
    except ValueError as e:
        p.error(one_line(e))
    points = [{"setting": s} for s in dict.fromkeys(r.get("setting") for r in rows)]
    fill_eval_split(rows, cfg, [])  # rows of sweeps older than the field: the split the config gives
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        with locked(args.out):
            write_results(args.out, meta, rows, cfg, "complete")
            report(cfg, points, meta, rows, args.out, None, ray=False)
    except WriteError as e:
        print(f"{p.prog}: error: {one_line(e)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

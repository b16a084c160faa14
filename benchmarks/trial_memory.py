"""What one compare_selectors run (one Ray trial) costs in memory, preset by preset: the
numbers to size ``--cpus-per-run`` / ``--gpus-per-run`` (and how many trials fit a node) by.

    python -m benchmarks.trial_memory --presets tiny,small,paper --dataset digits --device cpu --out results/memory

Each preset runs in a fresh interpreter, as a Ray trial runs in its own worker process:
the imports, the data set, then one epoch of the `all` selector (every patch: the largest
sequence, so the most activation memory) through `benchmarks.sweep.local.run_one`, the very
code a trial runs: env and ViT, optimiser, training steps, the epoch's checkpoint, the
evaluations. Reported per preset:

- ``rss_after_imports_mib``: the process's peak resident memory after importing torch,
  gymnasium and the project, before any data (what every worker pays);
- ``peak_rss_mib``: the process's peak resident memory over the whole run (``ru_maxrss``);
- on CUDA, ``cuda_max_allocated_mib`` / ``cuda_max_reserved_mib`` (torch's peaks: tensors,
  and what its caching allocator held) and ``cuda_in_use_mib`` (memory in use on the
  device at the end, the process's CUDA context included: what a trial takes from a
  shared GPU).

Writes ``OUT/trial_memory.json`` (with the meta block) and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

PRESETS = ("tiny", "small", "paper")


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB (ru_maxrss: KiB on Linux,
    bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def child(preset: str, dataset: str, device: str, selector: str) -> dict:
    """One run of `selector` at `preset`, measured (runs in the child process)."""
    import torch

    from benchmarks import compare_selectors as cs
    from benchmarks.sweep.local import RunOptions, run_one
    from patchenv import data as data_mod
    from patchenv.run.interrupt import GracefulInterrupt
    from patchenv.run import Budget

    after_imports = peak_rss_mib()
    with tempfile.TemporaryDirectory() as out:
        parser = cs.build_parser()
        args = cs.parse_args(parser, ["--dataset", dataset, "--preset", preset, "--device", device, "--epochs", "1",
                                      "--selectors", selector, "--out", out, "--no-progress"])
        cfg = cs.make_config(args)
        torch.set_num_threads(cfg["threads"])
        images = data_mod.load_dataset(cfg["dataset"], image_size=cfg["env"].get("image_size"))
        start = time.perf_counter()
        metrics = run_one(cfg, images, selector, 0, Budget(epochs=1), RunOptions.from_args(args),
                          GracefulInterrupt(), resume=False, keep_checkpoint=True)
        seconds = time.perf_counter() - start
    result = {"preset": preset, "dataset": dataset, "device": cfg["device"], "selector": selector,
              "batch_size": metrics["summary"]["batch_size"], "steps": metrics["summary"]["steps"],
              "seconds": seconds, "torch_threads": torch.get_num_threads(),
              "rss_after_imports_mib": after_imports, "peak_rss_mib": peak_rss_mib()}
    if torch.device(cfg["device"]).type == "cuda":
        free, total = torch.cuda.mem_get_info()  # note: a sync point; the run is over
        result.update(cuda_max_allocated_mib=torch.cuda.max_memory_allocated() / 2**20,
                      cuda_max_reserved_mib=torch.cuda.max_memory_reserved() / 2**20,
                      cuda_in_use_mib=(total - free) / 2**20)
    return result


def measure(preset: str, dataset: str, device: str, selector: str, timeout: float) -> dict:
    """`child` in a fresh interpreter; its result."""
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.trial_memory", "--child", preset, "--dataset", dataset,
                           "--device", device, "--selector", selector], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=root)
    if proc.returncode != 0:
        raise RuntimeError(f"preset {preset}: the child failed: {' '.join(proc.stderr.split()[-40:])}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    from benchmarks.common import markdown_table

    cuda = any("cuda_in_use_mib" in r for r in rows)
    header = ["preset", "batch", "steps", "RSS after imports MiB", "peak RSS MiB"]
    header += ["CUDA max allocated MiB", "CUDA max reserved MiB", "CUDA in use at end MiB"] if cuda else []
    body = []
    for r in rows:
        line = [r["preset"], r["batch_size"], r["steps"], f"{r['rss_after_imports_mib']:.0f}", f"{r['peak_rss_mib']:.0f}"]
        if cuda:
            line += [f"{r['cuda_max_allocated_mib']:.0f}", f"{r['cuda_max_reserved_mib']:.0f}",
                     f"{r['cuda_in_use_mib']:.0f}"]
        body.append(line)
    return markdown_table(header, body)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.trial_memory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default=",".join(PRESETS), help=f"comma list among {', '.join(PRESETS)} (default: all)")
    p.add_argument("--dataset", default="digits", help="(default: digits, offline)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--selector", default="all", help="the agent spec to run (default: all, every patch)")
    p.add_argument("--timeout", type=float, default=600, help="seconds per preset (default: 600)")
    p.add_argument("--out", default="results/memory", help="output folder (default: results/memory)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # the measured process
    args = p.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.dataset, args.device, args.selector)))
        return 0
    presets = [s.strip() for s in args.presets.split(",") if s.strip()]
    unknown = [s for s in presets if s not in PRESETS]
    if unknown or not presets:
        p.error(f"--presets: expected a comma list among {', '.join(PRESETS)}, got {args.presets!r}")
    if args.device not in ("cpu", "cuda"):
        p.error(f"--device: expected cpu or cuda, got {args.device!r}")

    from patchenv.atomic import atomic_write_json
    from patchenv.run.meta import meta_block

    rows = []
    for preset in presets:
        try:
            rows.append(measure(preset, args.dataset, args.device, args.selector, args.timeout))
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            print(f"{p.prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
            return 1
        print(f"{preset}: peak RSS {rows[-1]['peak_rss_mib']:.0f} MiB", file=sys.stderr)
    meta = meta_block("cpu", {k: v for k, v in vars(args).items() if k != "child"}, status="complete")
    meta["device"] = args.device  # the children's device; this process used none
    out = Path(args.out)
    atomic_write_json(out / "trial_memory.json", {"meta": meta, "results": rows})
    print(table(rows))
    print(f"\nresults: {out / 'trial_memory.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

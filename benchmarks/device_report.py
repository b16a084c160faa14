"""The GPU path, measured: one command that checks and times patchenv on a device.

    python -m benchmarks.device_report                  # on a CUDA machine, ~5 min on an H100
    python -m benchmarks.device_report --device cpu --quick --out /tmp/device   # CI smoke run
    make bench-gpu                                      # the same on a bare GPU box (see Makefile)

Writes OUT/device_report.json (a ``meta`` block: date, device name, CPU, library and CUDA
versions, git commit, the configuration; then one record per section and the targets) and
OUT/device_report.md, and prints the Markdown. Both files are rewritten atomically after
every section, so a run cut short keeps what it measured.

Sections, in the order they run (each has its own duration in the JSON; a failure in one,
say torch.compile, is recorded with its error text and the others still run: on a lent
GPU there is one try):

1. ``gpu_tests``: ``pytest -m gpu tests/model/test_gpu.py`` in a subprocess (training step,
   per-image masks against the CPU, checkpoints across devices, bf16, compile, agentvit on
   the GPU); pass/fail/skip counts and each failure's short text. On a CPU they all skip.
2. ``step_time``: a bare training step (embed, forward on the kept tokens of one shared
   batch mask given as an index tensor, cross-entropy, backward, fused Adam) of the ViT
   preset against patches kept (64, 48, 32, 16, 8), per batch size, fp32 and bf16
   autocast, eager. Each k is timed in shuffled order within every repeat after warm-up
   (CUDA events on a GPU, perf_counter on a CPU); a time is the median over repeats, the
   ratio to the same variant's full step the median of the per-repeat ratios; images/s =
   batch / time.
3. ``env_overhead``: ``env.step`` with a fixed k=32 mask against the bare step with the
   same mask and configuration, timed side by side in alternating order (median of the
   per-repeat ratios); eager fp32, and bf16 + compile where compile runs.
   ``peer`` (after it): timm's ViT with PatchDropout at the same width, depth and heads,
   its step at 64 and 32 tokens beside the bare step and ``env.step`` (`benchmarks.device.peer`;
   skipped without timm).
4. ``agentvit``: AgentViT trains on the env on the device, with the paper's
   hyperparameters except that it acts greedily (eps 0.01) and learns from the first
   step, i.e. in its steady state; its own wall time (``overhead_time_s``: acting, s',
   learning) as a share of the loop's.
5. ``epoch``: one CIFAR-10-sized epoch (50,000 32x32x3 images, batch 128: 390 steps;
   CIFAR-10 itself when it is on disk, else random images of its shape) through the env
   with the ``all`` selector and ``random`` (k=32), eager fp32 and bf16 + compile:
   wall-clock, images/s, peak GPU memory, and the data pipeline's share (the env's batch
   loading and augmentation alone, 390 batches, timed apart).
6. ``step_time_compiled``: section 2 with ``torch.compile`` of ``forward_selected``
   (dynamic shapes, as the env compiles it); last because compiling costs the most.

Targets (PASS/FAIL in both files; a target whose section failed is FAIL, "not measured"):
step(32 of 64) <= 0.55 x step(64) at batch 128 (eager fp32); env.step <= 1.05 x the bare
step; data pipeline < 5% of the fastest all-patch epoch; an all-patch epoch <= 3 s (the
fastest variant, named). With ``--quick`` the sizes differ from the targets' and the
verdicts only exercise the code.

Time budget (full run): aimed at ~5 min on an H100, held under ``--budget-s`` (420 s;
the imports add ~10 s). Timing loops size their repeats to a per-section budget, and a
section, or a compiled variant (it cannot be interrupted), that would start with too
little of the budget left is skipped and recorded as skipped. Compiles are the big cost
and are shared: dynamo and inductor cache a traced forward across model instances, so
each (precision, all-patch or gathered) graph compiles once per run. Expected on an
H100 (estimates until the first run): gpu_tests 60-120 s (stopped at 200 s), step_time
~15 s, env_overhead ~45 s (compiles bf16 + gather), agentvit ~10 s, epoch ~60 s
(compiles bf16 + all patches), step_time_compiled 60-100 s (compiles the two fp32 graphs).

``--quick``: the same code path at smoke-test size (tiny ViT, batch 16, a 1,024
image epoch, compile skipped on a CPU): well under 2 minutes on 2 CPU cores.

The exit status is 0 once the report is written, whatever it found: read the files.

What the sections measure, and the report's files, live in `benchmarks.device`; this is the command line.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional

import torch
from tqdm import tqdm

from benchmarks.device.gpu_tests import section_gpu_tests
from benchmarks.device.harness import Context, allow_recompiles, attempt, dynamo_stats, full_config, quick_config
from benchmarks.device.report import device_meta, write_report
from benchmarks.device.step_time import (section_env_overhead, section_profile, section_step_time,
                                         section_step_time_graph)
from benchmarks.device.peer import available as timm_available, section_peer
from benchmarks.device.training_loop import section_agentvit, section_epoch
from patchenv.env import resolve_device

# The sections, in the order they run (cheap and telling first, compiling last).
SECTIONS: list[tuple[str, Callable[[Context, dict], None]]] = [
    ("gpu_tests", section_gpu_tests),
    ("step_time", lambda ctx, rec: section_step_time(ctx, rec, mode="eager")),
    ("step_time_graph", section_step_time_graph),
    ("env_overhead", section_env_overhead),
    ("peer", section_peer),
    ("profile", section_profile),
    ("agentvit", section_agentvit),
    ("epoch", section_epoch),
    ("step_time_compiled", lambda ctx, rec: section_step_time(ctx, rec, mode="compile")),
]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.device_report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cuda or cpu")
    p.add_argument("--quick", action="store_true", help="smoke-test sizes (tiny ViT, small epoch)")
    p.add_argument("--out", default="results/device", help="folder for device_report.json/.md")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-compile", action="store_true", help="skip every torch.compile variant")
    p.add_argument("--budget-s", type=float, default=None, help="whole-run budget in seconds (default 420; "
                                                                "quick 110)")
    p.add_argument("--sections", default=",".join(name for name, _ in SECTIONS),
                   help="comma list of sections to run (default: all)")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        raise SystemExit(f"device_report: {e}") from None
    names = [x.strip() for x in args.sections.split(",") if x.strip()]
    known = [name for name, _ in SECTIONS]
    if not names or any(x not in known for x in names):
        raise SystemExit(f"device_report: --sections takes a comma list of {', '.join(known)}; got {args.sections!r}")
    if args.budget_s is not None and not args.budget_s > 0:
        raise SystemExit(f"device_report: --budget-s must be positive, got {args.budget_s}")
    cfg = quick_config(device) if args.quick else full_config(device)
    if args.no_compile:
        cfg = replace(cfg, compile=False)
    if args.budget_s is not None:
        cfg = replace(cfg, budget_s=args.budget_s)
    out = Path(args.out)
    ctx = Context(cfg=cfg, device=device, start=time.perf_counter(), show=not args.no_progress)
    report = {"meta": device_meta(ctx, list(sys.argv[1:] if argv is None else argv)), "sections": {}}
    report["meta"]["quick"] = bool(args.quick)
    plan = [(name, fn) for name, fn in SECTIONS if name in names]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if cfg.compile:
        allow_recompiles()
    text = ""
    try:
        bar = tqdm(plan, desc="device report", disable=not ctx.show)
        for name, fn in bar:
            bar.set_description(f"device report: {name}")
            rec: dict = {"status": "running"}
            report["sections"][name] = rec
            t0 = time.perf_counter()
            if name == "step_time_compiled" and not cfg.compile:
                rec.update(status="skipped", skipped="compile off (--no-compile, or --quick on a CPU)")
            elif name in ("step_time_graph",) and device.type != "cuda":
                rec.update(status="skipped", skipped="CUDA graphs need a CUDA device")
            elif name == "peer" and not timm_available():
                rec.update(status="skipped", skipped="timm is not installed (pip install timm: a benchmark-only extra)")
            elif ctx.remaining() < 10:
                rec.update(status="skipped", skipped=f"the run's budget of {cfg.budget_s:.0f} s is spent")
            else:
                rec["status"] = "ok" if attempt(rec, lambda: fn(ctx, rec)) else "error"
            rec["duration_s"] = time.perf_counter() - t0
            report["meta"]["duration_s"] = time.perf_counter() - ctx.start
            text = write_report(out, report)  # after every section: a cut-short run keeps its numbers
        report["meta"]["status"] = "complete"
    finally:
        report["meta"]["duration_s"] = time.perf_counter() - ctx.start
        report["meta"]["dynamo"] = dynamo_stats() if cfg.compile else None
        if report["meta"]["status"] != "complete":
            report["meta"]["status"] = "interrupted"
        text = write_report(out, report)
    print(text)
    failed = [name for name, r in report["sections"].items() if r["status"] == "error"]
    print(f"\nwrote {out / 'device_report.json'} and {out / 'device_report.md'} in {report['meta']['duration_s']:.0f} s"
          + (f"; section(s) with errors: {', '.join(failed)}" if failed else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

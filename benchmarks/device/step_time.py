"""Sections 2 and 6 (and ``step_time_graph``): the bare training step's time against the
patches kept, per batch size and precision, eager, from a CUDA graph or compiled."""
from __future__ import annotations

import math

import numpy as np
import torch
from tqdm import tqdm

from benchmarks.bare_step import BareStep
from benchmarks.device.attempts import attempt
from benchmarks.device.config import IMAGE_SIZE, PATCH_SIZE
from benchmarks.device.context import Context, fixed_mask
from benchmarks.device.timing import paired_stats, repeats_for
from patchenv.timing import DeviceTimer


def section_step_time(ctx: Context, rec: dict, mode: str) -> None:
    cfg = ctx.cfg
    n = (IMAGE_SIZE // PATCH_SIZE) ** 2
    ks = list(cfg.ks)
    rng = np.random.default_rng(cfg.seed)
    masks = {k: fixed_mask(n, k, rng) for k in ks}
    order_rng = np.random.default_rng(cfg.seed + 1)
    timer = DeviceTimer(ctx.device)
    compiled = mode == "compile"
    variants = [(b, p) for p in cfg.precisions for b in cfg.batch_sizes]
    rec.update({"mode": mode, "num_patches": n, "ks": ks, "variants": []})
    # One model for every variant: timing does not depend on the weights, and a compiled
    # forward is traced once per precision and mask kind, not per batch size.
    bare = BareStep(ctx.model_config(), cfg.batch_sizes[0], ctx.device, mode, cfg.seed)
    keeps = {k: bare.keep(masks[k]) for k in ks}
    budget_each = cfg.step_budget_s / len(variants)
    compiled_precisions: set = set()
    for b, precision in tqdm(variants, desc=f"step time ({mode})", disable=not ctx.show, leave=False):
        v = {"name": f"{precision} {mode}", "batch_size": b, "precision": precision, "mode": mode}
        rec["variants"].append(v)
        need = cfg.compile_reserve_s if (compiled and precision not in compiled_precisions) else 5.0
        if ctx.remaining() < need:
            v["skipped"] = f"{ctx.remaining():.0f} s of the run's budget left, {need:.0f} s needed"
            continue
        compiled_precisions.add(precision)
        attempt(v, lambda: time_step_variant(ctx, bare, keeps, b, precision, timer, order_rng, budget_each, v))
    measured = [v for v in rec["variants"] if "rows" in v]
    if not measured:
        raise RuntimeError("no variant was measured: " + "; ".join(v.get("error", v.get("skipped", "?"))
                                                                   for v in rec["variants"]))


def time_step_variant(ctx: Context, bare: BareStep, keeps: dict, batch_size: int, precision: str, timer: DeviceTimer,
                      order_rng: np.random.Generator, budget_s: float, v: dict) -> None:
    cfg = ctx.cfg
    ks = list(keeps)
    full = ks[0]
    bare.set_batch(batch_size, cfg.seed)
    if ctx.cuda:
        torch.cuda.reset_peak_memory_stats(ctx.device)
    step = {k: (lambda k=k: bare(keeps[k], precision)) for k in ks}
    warmup = DeviceTimer(ctx.device, sync_start=False)
    warmup.start()
    for k in ks:
        for _ in range(cfg.warmup):
            step[k]()
    v["warmup_s"] = warmup.stop()  # with compile: mostly compiling
    probe = {k: timer(step[k]) for k in ks}
    inner = max(1, math.ceil(cfg.min_time_s / max(min(probe.values()), 1e-9)))
    repeats = repeats_for(cfg, inner * sum(probe.values()), budget_s)
    times = {k: [] for k in ks}
    for _ in range(repeats):
        for k in order_rng.permutation(ks):  # every k in each repeat, shuffled: drift hits all alike
            times[int(k)].append(timer(step[int(k)], inner))
    v.update({"inner_steps": inner, "repeats": repeats, "rows": []})
    for k in ks:
        t = np.asarray(times[k])
        med = float(np.median(t))
        v["rows"].append({"k": k, "ideal": k / full, "median_s": med, "p25_s": float(np.percentile(t, 25)),
                          "p75_s": float(np.percentile(t, 75)), "images_per_s": batch_size / med,
                          "ratio_to_full": paired_stats(times[k], times[full])["ratio"], "times_s": t.tolist()})
    if ctx.cuda:
        v["peak_memory_mb"] = torch.cuda.max_memory_allocated(ctx.device) / 2**20


def section_step_time_graph(ctx: Context, rec: dict) -> None:
    """Section 2 with the whole step replayed from a CUDA graph (the env's cuda_graph=True)."""
    section_step_time(ctx, rec, mode="graph")

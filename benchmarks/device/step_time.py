"""The training step's time on the device, three sections of the report:

- ``step_time`` (also ``step_time_graph``, ``step_time_compiled``): the bare training step
  (`benchmarks.bare_step`) against the patches kept, per batch size and precision, eager,
  replayed from a CUDA graph or compiled; the curve `benchmarks.throughput` measures
  (`time_against_k`), with a paired ratio to the full step and repeats sized to a budget;
- ``env_overhead``: env.step against the bare step with the same mask, timed side by side;
- ``profile``: where an eager (and a CUDA-graph) env step's time goes, by torch.profiler.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from tqdm import tqdm

from benchmarks.bare_step import BareStep
from benchmarks.common import paired_stats
from benchmarks.device.harness import (IMAGE_SIZE, PATCH_SIZE, Context, attempt, env_step, fixed_mask, make_env,
                                       repeats_for)
from benchmarks.throughput import spread, time_against_k
from patchenv.timing import DeviceTimer


# -- step_time: the bare step against k ------------------------------------------------------
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
    # every k in each repeat, shuffled: drift hits all alike
    curve = time_against_k({"bare": lambda k: step[k]()}, ks, timer, inner, repeats, order_rng)
    times = {k: curve[("bare", k)] for k in ks}
    v.update({"inner_steps": inner, "repeats": repeats, "rows": []})
    for k in ks:
        row = spread(times[k])
        v["rows"].append({"k": k, "ideal": k / full, **row, "images_per_s": batch_size / row["median_s"],
                          "ratio_to_full": paired_stats(times[k], times[full])["ratio"], "times_s": times[k]})
    if ctx.cuda:
        v["peak_memory_mb"] = torch.cuda.max_memory_allocated(ctx.device) / 2**20


def section_step_time_graph(ctx: Context, rec: dict) -> None:
    """``step_time`` with the whole step replayed from a CUDA graph (the env's cuda_graph=True)."""
    section_step_time(ctx, rec, mode="graph")


# -- env_overhead: env.step against the bare step --------------------------------------------
def section_env_overhead(ctx: Context, rec: dict) -> None:
    cfg = ctx.cfg
    b, k = cfg.epoch_batch, cfg.overhead_k
    images = ctx.random_images()
    n = (IMAGE_SIZE // PATCH_SIZE) ** 2
    mask = fixed_mask(n, k, np.random.default_rng(cfg.seed))
    variants = [("fp32", "eager")] + ([("fp32", "graph"), ("bf16", "graph")] if ctx.cuda else []) \
        + ([("bf16", "compile")] if cfg.compile else [])
    rec.update({"batch_size": b, "k": k, "obs_type": "pooled", "variants": []})
    for precision, mode in variants:
        v = {"name": f"{precision} {mode}", "precision": precision, "mode": mode, "compiled": mode == "compile"}
        rec["variants"].append(v)
        need = cfg.compile_reserve_s if mode == "compile" else 10.0
        if ctx.remaining() < need:
            v["skipped"] = f"{ctx.remaining():.0f} s of the run's budget left, {need:.0f} s needed"
            continue
        attempt(v, lambda: time_env_overhead(ctx, images, b, mask, precision, mode, v))
    if not any("ratio" in v for v in rec["variants"]):
        raise RuntimeError("no variant was measured: " + "; ".join(v.get("error", v.get("skipped", "?"))
                                                                   for v in rec["variants"]))


def time_env_overhead(ctx: Context, images, b: int, mask: np.ndarray, precision: str, mode: str,
                      v: dict) -> None:
    cfg = ctx.cfg
    env = make_env(ctx, images, b, precision, mode, obs_type="pooled", selection="batch")
    try:
        env.reset(seed=cfg.seed)
        bare = BareStep(ctx.model_config(), b, ctx.device, mode, cfg.seed)
        keep = bare.keep(mask)
        steps = {"env": lambda: env_step(env, mask), "bare": lambda: bare(keep, precision)}
        timer = DeviceTimer(ctx.device)
        warmup = DeviceTimer(ctx.device, sync_start=False)
        warmup.start()
        for fn in steps.values():
            for _ in range(cfg.warmup):
                fn()
        v["warmup_s"] = warmup.stop()
        probe = timer(steps["bare"])
        inner = max(1, math.ceil(cfg.min_time_s / max(probe, 1e-9)))
        repeats = repeats_for(cfg, 2.2 * inner * probe, cfg.overhead_budget_s)
        order = np.random.default_rng(cfg.seed + 2)
        times = {"env": [], "bare": []}
        for _ in range(repeats):
            for name in order.permutation(list(steps)):  # side by side, alternating first
                times[name].append(timer(steps[name], inner))
        v.update({"inner_steps": inner, "repeats": repeats, "env_step_s": float(np.median(times["env"])),
                  "bare_step_s": float(np.median(times["bare"])), **paired_stats(times["env"], times["bare"]),
                  "env_times_s": times["env"], "bare_times_s": times["bare"]})
    finally:
        env.close()


# -- profile: where a step's time goes -------------------------------------------------------
def section_profile(ctx: Context, rec: dict) -> None:
    """torch.profiler over a few env steps (fp32, pooled observation, a k=32 mask), eager and,
    on CUDA, from a CUDA graph: kernels launched per step, host time per step, device
    time per step, and the ops that cost the host most. A step whose host time exceeds its
    device time is bound by launching kernels, not by the GPU."""
    from torch.profiler import ProfilerActivity, profile

    cfg = ctx.cfg
    b, k, steps = cfg.epoch_batch, cfg.overhead_k, 10
    mask = fixed_mask((IMAGE_SIZE // PATCH_SIZE) ** 2, k, np.random.default_rng(cfg.seed))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if ctx.cuda else [])
    rec["variants"] = []
    for mode in ["eager"] + (["graph"] if ctx.cuda else []):
        v = {"name": f"fp32 {mode}", "mode": mode, "batch_size": b, "k": k, "steps": steps}
        rec["variants"].append(v)

        def measure(v=v, mode=mode):
            env = make_env(ctx, ctx.random_images(), b, "fp32", mode, obs_type="pooled", selection="batch")
            try:
                env.reset(seed=cfg.seed)
                for _ in range(3):  # warm-up (and, with graphs, capture)
                    env_step(env, mask)
                timer = DeviceTimer(ctx.device)
                timer.start()
                with profile(activities=activities) as prof:
                    for _ in range(steps):
                        env_step(env, mask)
                    wall = timer.stop()
            finally:
                env.close()
            events = prof.key_averages()
            # Kernels only: an aten op's entry carries its kernels' device time as well, and
            # summing both would count eager work twice.
            on_device = [e for e in events if str(getattr(e, "device_type", "")).endswith("CUDA")
                         and (getattr(e, "self_device_time_total", 0) or 0) > 0]
            device_us = sum(e.self_device_time_total for e in on_device)
            kernels = sum(e.count for e in on_device)
            top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:10]
            top_device = sorted(on_device, key=lambda e: e.self_device_time_total, reverse=True)[:10]
            v["host_ms_per_step"] = sum(e.self_cpu_time_total for e in events) / 1e3 / steps
            v["top_device_ops"] = [{"op": e.key, "calls_per_step": e.count / steps,
                                    "self_device_ms_per_step": (getattr(e, "self_device_time_total", 0) or 0) / 1e3 / steps}
                                   for e in top_device]
            v.update({"wall_ms_per_step": 1e3 * wall / steps,
                      "device_ms_per_step": device_us / 1e3 / steps if ctx.cuda else None,
                      "device_kernels_per_step": kernels / steps if ctx.cuda else None,
                      "top_host_ops": [{"op": e.key, "calls_per_step": e.count / steps,
                                        "self_cpu_ms_per_step": e.self_cpu_time_total / 1e3 / steps}
                                       for e in top]})

        attempt(v, measure)

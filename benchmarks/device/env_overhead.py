"""Section 3, ``env_overhead``: env.step against the bare step with the same mask, timed
side by side."""
from __future__ import annotations

import math

import numpy as np

from benchmarks.bare_step import BareStep
from benchmarks.device.attempts import attempt
from benchmarks.device.config import IMAGE_SIZE, PATCH_SIZE
from benchmarks.device.context import Context, env_step, fixed_mask, make_env
from benchmarks.device.timing import paired_stats, repeats_for
from patchenv.timing import DeviceTimer


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

"""Section ``profile``: where an eager (and a CUDA-graph) env step's time goes, by
torch.profiler."""
from __future__ import annotations


import numpy as np

from benchmarks.device.attempts import attempt
from benchmarks.device.config import IMAGE_SIZE, PATCH_SIZE
from benchmarks.device.context import Context, env_step, fixed_mask, make_env
from patchenv.timing import DeviceTimer


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

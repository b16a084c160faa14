"""The training loop on the device, two sections of the report:

- ``agentvit``: AgentViT's own share of the training loop's wall time, in its steady state;
- ``epoch``: one CIFAR-10-sized epoch through the env per selector and variant, and the
  data pipeline's share of it.
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

import agents
from benchmarks.device.harness import Context, attempt, env_step, make_env, release_memory
from patchenv import data as data_mod
from patchenv.timing import DeviceTimer


# -- agentvit: the agent's share of the loop -------------------------------------------------
def section_agentvit(ctx: Context, rec: dict) -> None:
    cfg = ctx.cfg
    b = cfg.epoch_batch
    # Greedy from the start (eps = eps_end = 0.01): the steady state of the paper's schedule
    # (eps decays over 20,000 of a run's ~39,000 iterations), where every step runs the
    # Q-network and reads its mask back; learning from the first epoch.
    hp = dict(frequency=cfg.agent_frequency, learning_starts=0, eps_start=0.01, eps_end=0.01, seed=cfg.seed)
    agent = agents.make("agentvit", **hp)
    rec["hyperparameters"] = hp
    env = make_env(ctx, ctx.random_images(), b, "fp32", "eager", **agent.env_kwargs())
    try:
        env.reset(seed=cfg.seed)
        per_step = DeviceTimer(ctx.device, sync_start=False)(lambda: agent.train(env, steps=cfg.warmup + 2)) \
            / (cfg.warmup + 2)
        # Fewer steps when the warm-up says the planned window would not fit the budget.
        # Never fewer than it takes to fill a replay batch and learn twice.
        budget = max(5.0, min(cfg.step_budget_s / 2, ctx.remaining() - 30))
        floor = min(cfg.agent_steps, (agent.hp.buffer_batch_size + 2) * cfg.agent_frequency)
        steps = int(min(cfg.agent_steps, max(floor, budget / max(per_step, 1e-9))))
        u = env.unwrapped
        overhead0, train0 = agent.overhead_time_s, u.train_time_s
        wall = DeviceTimer(ctx.device)(lambda: agent.train(env, steps=steps))
        overhead = agent.overhead_time_s - overhead0
        rec.update({"steps": steps, "planned_steps": cfg.agent_steps, "frequency": cfg.agent_frequency,
                    "batch_size": b, "wall_s": wall, "agent_overhead_s": overhead, "agent_share": overhead / wall,
                    "env_train_time_s": u.train_time_s - train0,
                    "agent_over_env_train": overhead / max(u.train_time_s - train0, 1e-12),
                    "agent_device": str(agent.device), "updates": agent.updates, "replay_size": agent.replay_size,
                    "step_ms": 1e3 * wall / steps})
    finally:
        env.close()


# -- epoch: one epoch through the env ----------------------------------------------------------
def epoch_data(ctx: Context) -> tuple[data_mod.ImageData, str]:
    cfg = ctx.cfg
    if cfg.use_cifar10:
        try:
            images = data_mod.load_dataset("cifar10")
            return images, f"cifar10 ({len(images.train_y)} training images, from disk)"
        except data_mod.DatasetError as e:  # not on disk (no network on a lent GPU)
            reason = str(e).split(" (")[0]
            return ctx.random_images(), f"random images of CIFAR-10's shape; {reason}"
    return ctx.random_images(), "random images of CIFAR-10's shape"


def time_data_pipeline(ctx: Context, images: data_mod.ImageData, b: int, steps: int) -> dict:
    """The env's batch loading alone, `steps` batches: index the device-resident uint8
    set by a device randperm, to float, crop + flip, normalise (the env's _load_batch)."""
    dev = ctx.device
    x_all, y_all = images.train_x.to(dev), images.train_y.to(dev)
    mean = torch.tensor(images.mean, device=dev).view(1, -1, 1, 1)
    std = torch.tensor(images.std, device=dev).view(1, -1, 1, 1)
    gen = torch.Generator(dev).manual_seed(ctx.cfg.seed)

    def epoch():
        perm = torch.randperm(len(y_all), device=dev, generator=gen)
        for pos in range(steps):
            idx = perm[pos * b:(pos + 1) * b]
            x = data_mod.augment(data_mod.to_unit(x_all[idx]), gen)
            batch = (data_mod.normalize(x, mean, std), y_all[idx])
        return batch

    epoch()  # warm-up (allocator, kernels)
    times = []
    timer = DeviceTimer(dev)
    for _ in range(3):
        times.append(timer(epoch))
    return {"steps": steps, "median_s": float(np.median(times)), "times_s": times}


def section_epoch(ctx: Context, rec: dict) -> None:
    cfg = ctx.cfg
    images, source = epoch_data(ctx)
    b = cfg.epoch_batch
    steps = len(images.train_y) // b
    rec.update({"data": source, "images": len(images.train_y), "batch_size": b, "steps_per_epoch": steps,
                "random_k": cfg.random_k, "runs": []})
    rec["data_pipeline"] = {}
    attempt(rec["data_pipeline"], lambda: rec["data_pipeline"].update(time_data_pipeline(ctx, images, b, steps)))
    variants = [("fp32", "eager")] + ([("fp32", "graph"), ("bf16", "graph")] if ctx.cuda else []) \
        + [("bf16", "compile" if cfg.compile else "eager")]
    selectors = [("all", {}), ("random", {"k": cfg.random_k, "seed": cfg.seed})]
    runs = [(p, m, s, kw) for p, m in variants for s, kw in selectors]
    for precision, mode, selector, kw in tqdm(runs, desc="epochs", disable=not ctx.show, leave=False):
        run = {"selector": selector if not kw else f"{selector}:k={kw['k']}", "precision": precision,
               "mode": mode, "compiled": mode == "compile", "variant": f"{precision} {mode}"}
        rec["runs"].append(run)
        need = (cfg.compile_reserve_s if mode == "compile" else 10.0)
        if ctx.remaining() < need:
            run["skipped"] = f"{ctx.remaining():.0f} s of the run's budget left, {need:.0f} s needed"
            continue
        attempt(run, lambda: epoch_run(ctx, images, b, precision, mode, selector, kw, run))
        pipeline = rec["data_pipeline"].get("median_s")
        if pipeline is not None and run.get("wall_s"):
            run["data_pipeline_share"] = pipeline / run["wall_s"]
    if not any("wall_s" in r for r in rec["runs"]):
        raise RuntimeError("no epoch was measured: " + "; ".join(r.get("error", r.get("skipped", "?"))
                                                                 for r in rec["runs"]))


def epoch_run(ctx: Context, images, b: int, precision: str, mode: str, selector: str, kw: dict,
              run: dict) -> None:
    cfg = ctx.cfg
    release_memory()  # the last run's env must be gone before the peak-memory counter restarts
    agent = agents.make(selector, **kw)
    env = make_env(ctx, images, b, precision, mode, **agent.env_kwargs())
    try:
        agent.setup(env)
        u = env.unwrapped
        obs, _ = env.reset(seed=cfg.seed)
        warmup = DeviceTimer(ctx.device, sync_start=False)
        warmup.start()
        for _ in range(cfg.warmup):
            obs = env_step(env, agent.act(obs))
        run["warmup_s"] = warmup.stop()  # with compile: mostly compiling
        if ctx.cuda:
            torch.cuda.reset_peak_memory_stats(ctx.device)
        train0 = u.train_time_s
        steps = u.steps_per_epoch
        timer = DeviceTimer(ctx.device)
        timer.start()
        for _ in range(steps):
            obs = env_step(env, agent.act(obs))
        wall = timer.stop()
        run.update({"steps": steps, "wall_s": wall, "env_train_time_s": u.train_time_s - train0,
                    "step_ms": 1e3 * wall / steps, "images_per_s": steps * b / wall})
        if ctx.cuda:
            run["peak_memory_mb"] = torch.cuda.max_memory_allocated(ctx.device) / 2**20
    finally:
        env.close()

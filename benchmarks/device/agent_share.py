"""Section 4, ``agentvit``: AgentViT's own share of the training loop's wall time, in its
steady state."""
from __future__ import annotations


import agents
from benchmarks.device.context import Context, make_env
from patchenv.timing import DeviceTimer


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

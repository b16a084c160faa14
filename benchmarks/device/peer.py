"""The peer a user would pick instead: timm's ``VisionTransformer`` with ``patch_drop_rate``
(PatchDropout: each image keeps a random subset of its patch tokens, in training only).

Section ``peer``: a training step (forward, cross-entropy, backward, Adam) of timm's ViT at
the preset's width, depth and heads (timm's heads split the width: ``dim / heads`` per head
where SimpleViT has ``dim_head``; the report says so), no class token and average pooling
as SimpleViT, at 64 tokens (``patch_drop_rate=0``) and 32 (``0.5``); beside them the bare
step (`benchmarks.bare_step`) at k = 64 and 32 and ``env.step`` with a fixed 32-patch mask,
every step timed in each repeat in shuffled order, fp32 eager. Reported: each median time
and the paired ratios env.step(32) / timm(32), timm(32) / timm(64) and bare(32) / timm(32).

timm is a benchmark-only extra (``pip install timm``); without it the section is skipped
and says so.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.bare_step import BareStep
from benchmarks.common import paired_stats
from benchmarks.device.harness import IMAGE_SIZE, PATCH_SIZE, Context, env_step, fixed_mask, make_env, repeats_for
from patchenv.timing import DeviceTimer


def available() -> bool:
    try:
        import timm  # noqa: F401
    except ImportError:
        return False
    return True


class TimmStep:
    """One training step of timm's ViT on a fixed batch, at a patch drop rate."""

    def __init__(self, vit: dict, batch_size: int, device: torch.device, drop_rate: float, seed: int):
        from timm.models.vision_transformer import VisionTransformer

        torch.manual_seed(seed)
        self.model = VisionTransformer(img_size=IMAGE_SIZE, patch_size=PATCH_SIZE, in_chans=3, num_classes=10,
                                       embed_dim=vit["dim"], depth=vit["depth"], num_heads=vit["heads"],
                                       mlp_ratio=vit["mlp_dim"] / vit["dim"], class_token=False, global_pool="avg",
                                       patch_drop_rate=drop_rate).to(device).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3, fused=device.type == "cuda")
        gen = torch.Generator().manual_seed(seed)
        self.x = torch.randn(batch_size, 3, IMAGE_SIZE, IMAGE_SIZE, generator=gen).to(device)
        self.y = torch.randint(0, 10, (batch_size,), generator=gen).to(device)

    def __call__(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(self.model(self.x), self.y).backward()
        self.optimizer.step()

    def tokens(self) -> int:
        """Tokens the first transformer block sees (PatchDropout's kept count), read by a hook."""
        seen = []
        hook = self.model.blocks[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[1]))
        try:
            with torch.no_grad():
                self.model(self.x[:2])
        finally:
            hook.remove()
        return int(seen[0])


def section_peer(ctx: Context, rec: dict) -> None:
    cfg = ctx.cfg
    b = cfg.epoch_batch
    vit = ctx.vit()
    n = (IMAGE_SIZE // PATCH_SIZE) ** 2
    mask = fixed_mask(n, n // 2, np.random.default_rng(cfg.seed))
    full = np.ones(n, dtype=np.int8)
    bare = BareStep(ctx.model_config(), b, ctx.device, "eager", cfg.seed)
    env = make_env(ctx, ctx.random_images(), b, "fp32", "eager", obs_type="pooled", selection="batch")
    try:
        env.reset(seed=cfg.seed)
        timm_full, timm_half = (TimmStep(vit, b, ctx.device, rate, cfg.seed) for rate in (0.0, 0.5))
        keep_full, keep_half = bare.keep(full), bare.keep(mask)
        steps = {"timm_64": timm_full, "timm_32": timm_half,
                 "bare_64": lambda: bare(keep_full, "fp32"), "bare_32": lambda: bare(keep_half, "fp32"),
                 "env_32": lambda: env_step(env, mask)}
        rec.update({"batch_size": b, "num_patches": n, "precision": "fp32", "mode": "eager",
                    "timm_tokens": {"timm_64": timm_full.tokens(), "timm_32": timm_half.tokens()},
                    "head_dim": {"simplevit": vit["dim_head"], "timm": vit["dim"] // vit["heads"]}})
        for fn in steps.values():
            for _ in range(cfg.warmup):
                fn()
        timer = DeviceTimer(ctx.device)
        probe = max(timer(fn) for fn in steps.values())
        inner = max(1, math.ceil(cfg.min_time_s / max(probe, 1e-9)))
        repeats = repeats_for(cfg, 1.1 * inner * probe * len(steps), cfg.overhead_budget_s)
        order = np.random.default_rng(cfg.seed + 3)
        times: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(repeats):
            for name in order.permutation(list(steps)):  # every step each repeat, shuffled: drift hits all alike
                times[name].append(timer(steps[name], inner))
    finally:
        env.close()
    rec.update({"inner_steps": inner, "repeats": repeats, "times_s": times,
                "median_s": {name: float(np.median(t)) for name, t in times.items()},
                "ratios": {"env_32 / timm_32": paired_stats(times["env_32"], times["timm_32"]),
                           "timm_32 / timm_64": paired_stats(times["timm_32"], times["timm_64"]),
                           "bare_32 / timm_32": paired_stats(times["bare_32"], times["timm_32"]),
                           "env_32 / bare_32": paired_stats(times["env_32"], times["bare_32"])}})

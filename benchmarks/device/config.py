"""What a device report measures and how long it may take: `ReportConfig`, at the full
size the targets are stated for, or at smoke-test size (``--quick``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

PATCH_SIZE = 4  # the paper's 4x4 patches: N = 64 on 32x32 images
IMAGE_SIZE = 32
ROOT = Path(__file__).resolve().parents[2]  # the checkout: tests/ lives here
ENV_ID = "patchenv/PatchSelection-v1"


@dataclass
class ReportConfig:
    """What one report measures; `full_config` and `quick_config` are the two sizes."""

    preset: str = "paper"
    """ViT size from patchenv.env.presets.PRESETS (its batch size is not used)"""
    batch_sizes: tuple = (128, 512)
    """batch sizes of the bare-step timing; the first is the one the r32 target reads"""
    ks: tuple = (64, 48, 32, 16, 8)
    """patches kept per image in the step timing; the first must be all N (ratios are to it)"""
    precisions: tuple = ("fp32", "bf16")
    """fp32, and bf16 autocast (fp32 master weights, as the env's amp="bf16")"""
    compile: bool = True
    """also time torch.compile'd variants (forward_tokens, dynamic shapes, as the env does)"""
    epoch_images: int = 50_000
    """training images of the epoch run (CIFAR-10's training set)"""
    epoch_batch: int = 128
    """batch size of the epoch, env-overhead and agentvit runs (the paper's)"""
    use_cifar10: bool = True
    """epoch on CIFAR-10 when it is on disk (else random images of its shape)"""
    random_k: int = 32
    """patches the random selector keeps per step in the epoch run"""
    overhead_k: int = 32
    """patches kept by the fixed mask of the env-overhead comparison"""
    agent_steps: int = 780
    """env steps of AgentViT's timed window (two CIFAR-10 epochs at batch 128)"""
    agent_frequency: int = 50
    """AgentViT learns on every frequency-th batch (the paper's 50)"""
    warmup: int = 3
    """untimed calls per variant and k before timing (the first compiles)"""
    min_time_s: float = 0.02
    """one timing covers at least this many seconds of back-to-back steps"""
    min_repeats: int = 3
    """timed repeats per variant and k, at least ..."""
    max_repeats: int = 25
    """... and at most (fewer when a section's budget runs short)"""
    budget_s: float = 420.0
    """whole run, seconds: sections or compiles that would start after it are skipped"""
    tests_timeout_s: float = 200.0
    """the gpu tests subprocess is stopped after this many seconds"""
    step_budget_s: float = 40.0
    """seconds of timed repeats per step-time section (compiling not counted)"""
    overhead_budget_s: float = 15.0
    """seconds of timed repeats per env-overhead variant"""
    compile_reserve_s: float = 90.0
    """a compiled variant starts only with this much of the whole-run budget left"""
    seed: int = 0
    """seeds weights, data, masks and the order of timings"""


def full_config(device: torch.device) -> ReportConfig:
    return ReportConfig()


def quick_config(device: torch.device) -> ReportConfig:
    """Smoke-test sizes: the same code path in seconds on 2 CPU cores."""
    return ReportConfig(preset="tiny", batch_sizes=(16,), compile=device.type == "cuda", epoch_images=1024,
                        epoch_batch=16, use_cifar10=False, agent_steps=60, agent_frequency=5, warmup=1,
                        min_time_s=0.005, min_repeats=3, max_repeats=5, budget_s=110.0, tests_timeout_s=90.0,
                        step_budget_s=6.0, overhead_budget_s=3.0, compile_reserve_s=30.0)

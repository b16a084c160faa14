"""What every section of the device report runs in: what a report measures
(`ReportConfig`, full or ``--quick``), the run's `Context` (configuration, device, the clock
of the whole-run budget) with the env and inputs a section builds on it, how many repeats
fit a budget, a failed measurement recorded while the report goes on (`attempt`: on a
lent GPU there is one try, and a failed torch.compile must not cost the other sections),
and torch.compile's bookkeeping."""
from __future__ import annotations

import gc
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import gymnasium as gym
import numpy as np
import torch

import patchenv  # noqa: F401  (registers the env ids)
from patchenv import data as data_mod
from patchenv.env.presets import PRESETS


# -- what a report measures ---------------------------------------------------------------
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
    """also time torch.compile'd variants (forward_selected, dynamic shapes, as the env does)"""
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


def repeats_for(cfg: ReportConfig, seconds_per_repeat: float, budget_s: float) -> int:
    """Timed repeats that fit `budget_s`, within the configuration's bounds."""
    fit = int(budget_s / max(seconds_per_repeat, 1e-9))
    return int(min(max(fit, cfg.min_repeats), cfg.max_repeats))


# -- the run and what its sections build on -----------------------------------------------
@dataclass
class Context:
    cfg: ReportConfig
    device: torch.device
    start: float
    show: bool
    _images: Optional[data_mod.ImageData] = None

    def random_images(self) -> data_mod.ImageData:
        """Random images of CIFAR-10's shape, epoch_images of them (built once): the
        env-overhead and agentvit runs then have the epoch's steps per epoch."""
        if self._images is None:
            self._images = cifar_shaped(self.cfg.epoch_images, seed=self.cfg.seed)
        return self._images

    def remaining(self) -> float:
        return self.cfg.budget_s - (time.perf_counter() - self.start)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def vit(self) -> dict:
        vit = dict(PRESETS[self.cfg.preset])
        vit.pop("batch_size")
        return vit

    def model_config(self) -> dict:
        """SimpleViT's arguments for the preset on CIFAR-10-shaped images (the bare step's)."""
        return dict(image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, num_classes=10, channels=3, **self.vit())


def cifar_shaped(n_train: int, n_test: int = 1000, seed: int = 0) -> data_mod.ImageData:
    """Random uint8 images of CIFAR-10's shape (3x32x32, 10 classes) as an ImageData, with
    CIFAR-10's normalisation: the cost of a step does not depend on the pixel values."""
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_test
    x = torch.randint(0, 256, (n, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return data_mod.ImageData("synthetic-cifar10-shape", x[:n_train], y[:n_train], x[n_train:], y[n_train:], 10,
                              data_mod.CIFAR10_MEAN, data_mod.CIFAR10_STD)


def fixed_mask(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """A 0/1 int8 mask (N,) keeping k random patches."""
    mask = np.zeros(n, dtype=np.int8)
    mask[rng.choice(n, size=k, replace=False)] = 1
    return mask


def make_env(ctx: Context, images: data_mod.ImageData, batch_size: int, precision: str, mode: str, **kwargs):
    """The env on the report's device with the preset ViT; episodes never end on their own."""
    return gym.make(ENV_ID, dataset=images, batch_size=batch_size, patch_size=PATCH_SIZE, device=str(ctx.device),
                    amp="bf16" if precision == "bf16" else None, compile=mode == "compile",
                    cuda_graph=mode == "graph", episode_steps=10**9, **ctx.vit(), **kwargs)


def env_step(env, action):
    """env.step returning the next observation; a diverged step (episode over) continues
    the run with reset(), so timing goes on."""
    obs, _, terminated, truncated, _ = env.step(action)
    if terminated or truncated:
        obs, _ = env.reset()
    return obs


# -- a failed measurement is recorded and the report goes on ----------------------------------
def error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:2000]


def attempt(record: dict, fn: Callable[[], Any]) -> bool:
    """Run `fn`; on an exception store its text (and traceback tail) in `record`, free
    device memory and return False so the caller goes on with the next measurement."""
    try:
        fn()
        return True
    except Exception as e:  # a failed variant must not end the report
        record["error"] = error_text(e)
        record["traceback"] = traceback.format_exc().splitlines()[-12:]
        release_memory()
        return False


def release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# -- torch.compile's bookkeeping -------------------------------------------------------------
def allow_recompiles(limit: int = 64) -> None:
    """Every (precision, all-patch or gathered) graph of forward_selected is a dynamo cache
    entry of one code object; past dynamo's limit (8) it would run eager without a word
    and the compiled timings would be eager ones."""
    import torch._dynamo

    name = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"
    setattr(torch._dynamo.config, name, max(limit, getattr(torch._dynamo.config, name)))


def dynamo_stats() -> Optional[dict]:
    """Frames dynamo compiled and the graphs it produced (None where torch lacks them)."""
    try:
        from torch._dynamo.utils import counters
        return {"frames": dict(counters["frames"]), "unique_graphs": counters["stats"].get("unique_graphs", 0)}
    except Exception:  # a private counter; its absence must not cost the report
        return None

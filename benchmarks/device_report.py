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

1. ``gpu_tests``: ``pytest -m gpu tests/test_gpu.py`` in a subprocess (training step,
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
4. ``agentvit``: AgentViT trains on the env on the device, with the paper's
   hyperparameters except that it acts greedily (eps 0.01) and learns from the first
   step, i.e. in its steady state; its own wall time (``overhead_time_s``: acting, s',
   learning) as a share of the loop's.
5. ``epoch``: one CIFAR-10-sized epoch (50,000 32x32x3 images, batch 128: 390 steps;
   CIFAR-10 itself when it is on disk, else random images of its shape) through the env
   with the ``all`` selector and ``random`` (k=32), eager fp32 and bf16 + compile:
   wall-clock, images/s, peak GPU memory, and the data pipeline's share (the env's batch
   loading and augmentation alone, 390 batches, timed apart).
6. ``step_time_compiled``: section 2 with ``torch.compile`` of ``forward_tokens``
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
"""
from __future__ import annotations

import argparse
import gc
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

import agents
from benchmarks.bare_step import BareStep
from benchmarks.common import synchronize
import patchenv  # noqa: F401  (registers the env ids)
from patchenv import data as data_mod
from patchenv.atomic import atomic_write_json, atomic_write_text
from patchenv.env import resolve_device
from patchenv.run.meta import meta_block
from patchenv.env.presets import PRESETS

PATCH_SIZE = 4  # the paper's 4x4 patches: N = 64 on 32x32 images
IMAGE_SIZE = 32
ROOT = Path(__file__).resolve().parent.parent  # the checkout: tests/ lives here
ENV_ID = "patchenv/PatchSelection-v0"


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


# -- running sections ---------------------------------------------------------------------------
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


def allow_recompiles(limit: int = 64) -> None:
    """Every (precision, all-patch or gathered) graph of forward_tokens is a dynamo cache
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


def release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class Timer:
    """Seconds per call of `fn` over `inner` back-to-back calls: CUDA events on the GPU
    (the device's own clock, after a sync so the start event is not queued behind earlier
    work), perf_counter on the CPU."""

    def __init__(self, device: torch.device):
        self.device = device

    def __call__(self, fn: Callable[[], Any], inner: int = 1) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # note: sync (outside the timed work)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(inner):
                fn()
            end.record()
            end.synchronize()  # note: sync
            return start.elapsed_time(end) / 1e3 / inner
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        return (time.perf_counter() - t0) / inner


def fixed_mask(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """A 0/1 int8 mask (N,) keeping k random patches."""
    mask = np.zeros(n, dtype=np.int8)
    mask[rng.choice(n, size=k, replace=False)] = 1
    return mask


def cifar_shaped(n_train: int, n_test: int = 1000, seed: int = 0) -> data_mod.ImageData:
    """Random uint8 images of CIFAR-10's shape (3x32x32, 10 classes) as an ImageData, with
    CIFAR-10's normalisation: the cost of a step does not depend on the pixel values."""
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_test
    x = torch.randint(0, 256, (n, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return data_mod.ImageData("synthetic-cifar10-shape", x[:n_train], y[:n_train], x[n_train:], y[n_train:], 10,
                              data_mod.CIFAR10_MEAN, data_mod.CIFAR10_STD)


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


def paired_stats(num: list[float], den: list[float]) -> dict:
    """Median and quartiles of per-repeat ratios (load that comes and goes cancels out)."""
    r = np.asarray(num) / np.asarray(den)
    return {"ratio": float(np.median(r)), "ratio_p25": float(np.percentile(r, 25)),
            "ratio_p75": float(np.percentile(r, 75))}


def repeats_for(cfg: ReportConfig, seconds_per_repeat: float, budget_s: float) -> int:
    fit = int(budget_s / max(seconds_per_repeat, 1e-9))
    return int(min(max(fit, cfg.min_repeats), cfg.max_repeats))


# -- 1. the CUDA tests --------------------------------------------------------------------------
def section_gpu_tests(ctx: Context, rec: dict) -> None:
    test_file = ROOT / "tests" / "test_gpu.py"
    if not test_file.is_file():
        raise FileNotFoundError(f"{test_file} not found: run the report from a checkout of the project")
    with tempfile.TemporaryDirectory() as tmp:  # pytest's XML is read here, not kept
        run_gpu_tests(ctx, rec, test_file, Path(tmp) / "gpu_tests.xml")


def run_gpu_tests(ctx: Context, rec: dict, test_file: Path, xml_path: Path) -> None:
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", str(test_file.relative_to(ROOT)), "-q", "-p",
           "no:cacheprovider", f"--junitxml={xml_path}"]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    timeout = max(10.0, min(ctx.cfg.tests_timeout_s, ctx.remaining() - 60))
    rec["command"] = " ".join(cmd[1:])
    rec["timeout_s"] = timeout
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        rec["output_tail"] = ((e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes)
                              else (e.stdout or ""))[-3000:]
        raise TimeoutError(f"pytest -m gpu did not finish within {timeout:.0f} s") from None
    rec["returncode"] = proc.returncode
    rec["output_tail"] = (proc.stdout + proc.stderr)[-3000:]
    if not xml_path.is_file():
        raise RuntimeError(f"pytest wrote no report (exit {proc.returncode}): {(proc.stdout + proc.stderr)[-500:]}")
    rec.update(parse_junit(xml_path))
    # pytest: 0 all passed (or skipped), 1 some failed; anything else is a broken run.
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"pytest exited with status {proc.returncode}: {proc.stdout[-500:]}")


def parse_junit(path: Path) -> dict:
    """Counts and per-test outcomes from pytest's JUnit XML; a failure's short text is
    the first line of its message."""
    root = ET.parse(path).getroot()
    tests = []
    for case in root.iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = (node.get("message") or (node.text or "")).strip().splitlines()
                message = message[0][:300] if message else ""
                break
        tests.append({"name": case.get("name"), "outcome": outcome, "time_s": float(case.get("time") or 0.0),
                      "message": message})
    counts = {k: sum(t["outcome"] == k for t in tests) for k in ("passed", "failed", "error", "skipped")}
    return {"counts": counts, "tests": tests,
            "failures": [f"{t['name']}: {t['message']}" for t in tests if t["outcome"] in ("failed", "error")]}


# -- 2 and 6. bare training-step time against patches kept --------------------------------------
def section_step_time(ctx: Context, rec: dict, mode: str) -> None:
    cfg = ctx.cfg
    n = (IMAGE_SIZE // PATCH_SIZE) ** 2
    ks = list(cfg.ks)
    rng = np.random.default_rng(cfg.seed)
    masks = {k: fixed_mask(n, k, rng) for k in ks}
    order_rng = np.random.default_rng(cfg.seed + 1)
    timer = Timer(ctx.device)
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


def time_step_variant(ctx: Context, bare: BareStep, keeps: dict, batch_size: int, precision: str, timer: Timer,
                      order_rng: np.random.Generator, budget_s: float, v: dict) -> None:
    cfg = ctx.cfg
    ks = list(keeps)
    full = ks[0]
    bare.set_batch(batch_size, cfg.seed)
    if ctx.cuda:
        torch.cuda.reset_peak_memory_stats(ctx.device)
    step = {k: (lambda k=k: bare(keeps[k], precision)) for k in ks}
    t0 = time.perf_counter()
    for k in ks:
        for _ in range(cfg.warmup):
            step[k]()
    synchronize(ctx.device)
    v["warmup_s"] = time.perf_counter() - t0  # with compile: mostly compiling
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


# -- profile: where an eager step's time goes ------------------------------------------------------
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
                synchronize(ctx.device)
                t0 = time.perf_counter()
                with profile(activities=activities) as prof:
                    for _ in range(steps):
                        env_step(env, mask)
                    synchronize(ctx.device)
                wall = time.perf_counter() - t0
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


# -- 3. env.step against the bare step ----------------------------------------------------------
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
        timer = Timer(ctx.device)
        t0 = time.perf_counter()
        for fn in steps.values():
            for _ in range(cfg.warmup):
                fn()
        synchronize(ctx.device)
        v["warmup_s"] = time.perf_counter() - t0
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


# -- 4. AgentViT's own share ------------------------------------------------------------------------
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
        t0 = time.perf_counter()
        agent.train(env, steps=cfg.warmup + 2)
        synchronize(ctx.device)
        per_step = (time.perf_counter() - t0) / (cfg.warmup + 2)
        # Fewer steps when the warm-up says the planned window would not fit the budget.
        # Never fewer than it takes to fill a replay batch and learn twice.
        budget = max(5.0, min(cfg.step_budget_s / 2, ctx.remaining() - 30))
        floor = min(cfg.agent_steps, (agent.hp.buffer_batch_size + 2) * cfg.agent_frequency)
        steps = int(min(cfg.agent_steps, max(floor, budget / max(per_step, 1e-9))))
        u = env.unwrapped
        overhead0, train0 = agent.overhead_time_s, u.train_time_s
        synchronize(ctx.device)
        t0 = time.perf_counter()
        agent.train(env, steps=steps)
        synchronize(ctx.device)
        wall = time.perf_counter() - t0
        overhead = agent.overhead_time_s - overhead0
        rec.update({"steps": steps, "planned_steps": cfg.agent_steps, "frequency": cfg.agent_frequency,
                    "batch_size": b, "wall_s": wall, "agent_overhead_s": overhead, "agent_share": overhead / wall,
                    "env_train_time_s": u.train_time_s - train0,
                    "agent_over_env_train": overhead / max(u.train_time_s - train0, 1e-12),
                    "agent_device": str(agent.device), "updates": agent.updates, "replay_size": agent.replay_size,
                    "step_ms": 1e3 * wall / steps})
    finally:
        env.close()


# -- 5. a CIFAR-10-sized epoch ------------------------------------------------------------------
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
    for _ in range(3):
        synchronize(dev)
        t0 = time.perf_counter()
        epoch()
        synchronize(dev)
        times.append(time.perf_counter() - t0)
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
        t0 = time.perf_counter()
        for _ in range(cfg.warmup):
            obs = env_step(env, agent.act(obs))
        synchronize(ctx.device)
        run["warmup_s"] = time.perf_counter() - t0  # with compile: mostly compiling
        if ctx.cuda:
            torch.cuda.reset_peak_memory_stats(ctx.device)
        train0 = u.train_time_s
        steps = u.steps_per_epoch
        synchronize(ctx.device)
        t0 = time.perf_counter()
        for _ in range(steps):
            obs = env_step(env, agent.act(obs))
        synchronize(ctx.device)
        wall = time.perf_counter() - t0
        run.update({"steps": steps, "wall_s": wall, "env_train_time_s": u.train_time_s - train0,
                    "step_ms": 1e3 * wall / steps, "images_per_s": steps * b / wall})
        if ctx.cuda:
            run["peak_memory_mb"] = torch.cuda.max_memory_allocated(ctx.device) / 2**20
    finally:
        env.close()


# -- targets ------------------------------------------------------------------------------------
def evaluate_targets(report: dict) -> list[dict]:
    s = report["sections"]
    cfg = report["meta"]["config"]
    targets = []

    def add(name, value, goal, op, variant=None, note=None):
        measured = value is not None
        ok = bool(measured and (value <= goal if op == "<=" else value < goal))
        targets.append({"name": name, "value": value, "target": goal, "op": op, "pass": ok, "measured": measured,
                        "variant": variant, "note": note})

    b0, n = cfg["batch_sizes"][0], cfg["ks"][0]
    for section, mode in (("step_time", "eager"), ("step_time_graph", "graph")):
        if mode == "graph" and not any("rows" in v for v in s.get(section, {}).get("variants", [])):
            continue  # no CUDA: nothing to judge
        r32 = None
        for v in s.get(section, {}).get("variants", []):
            if v.get("batch_size") == b0 and v.get("precision") == "fp32" and "rows" in v:
                r32 = next((r["ratio_to_full"] for r in v["rows"] if r["k"] == 32), None)
        add(f"step(32 of {n}) / step({n}), batch {b0}", r32, 0.55, "<=", f"fp32 {mode}, batch {b0}")

    for mode in ("eager", "graph"):
        found = [v for v in s.get("env_overhead", {}).get("variants", [])
                 if v.get("precision") == "fp32" and v.get("mode", "eager") == mode]
        if found or mode == "eager":
            ratio = found[0].get("ratio") if found else None
            add("env.step / bare step (same k=32 mask)", ratio, 1.05, "<=", f"fp32 {mode}")

    epoch = s.get("epoch", {})
    all_runs = [r for r in epoch.get("runs", []) if r.get("selector") == "all" and r.get("wall_s")]
    fastest = min(all_runs, key=lambda r: r["wall_s"]) if all_runs else None
    pipeline = epoch.get("data_pipeline", {}).get("median_s")
    share = pipeline / fastest["wall_s"] if (fastest and pipeline is not None) else None
    add("data pipeline / all-patch epoch", share, 0.05, "<", fastest and f"{fastest['variant']} epoch")
    images, batch = epoch.get("images", cfg["epoch_images"]), epoch.get("batch_size", cfg["epoch_batch"])
    add(f"all-patch epoch ({images} images, batch {batch}), s", fastest and fastest["wall_s"], 3.0, "<=",
        fastest and fastest["variant"], None if images == 50_000 else "not a CIFAR-10-sized epoch (--quick)")
    return targets


# -- the report ---------------------------------------------------------------------------------
def device_meta(ctx: Context, argv: list[str]) -> dict:
    """The common meta block (`patchenv.run.meta`) plus the GPU's properties."""
    dev = ctx.device
    meta = meta_block(dev, asdict(ctx.cfg))
    gpu = None
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        gpu = {"name": torch.cuda.get_device_name(dev), "capability": f"{props.major}.{props.minor}",
               "memory_gb": round(props.total_memory / 2**30, 1), "multiprocessors": props.multi_processor_count}
    meta.update(device_name=gpu["name"] if gpu else f"CPU: {meta['cpu']}", gpu=gpu,
                cudnn=torch.backends.cudnn.version() if dev.type == "cuda" else None,
                float32_matmul_precision=torch.get_float32_matmul_precision(), quick=None, argv=argv)
    return meta


def _f(value, fmt="{:.3f}") -> str:
    return "-" if value is None else fmt.format(value)


def _table(header: list, rows: list) -> list[str]:
    return ["| " + " | ".join(map(str, header)) + " |", "|" + "|".join("---" for _ in header) + "|"] + \
        ["| " + " | ".join(map(str, r)) + " |" for r in rows]


def markdown(report: dict) -> str:
    meta, s = report["meta"], report["sections"]
    v = meta["versions"]
    out = [f"# patchenv device report: {meta['device_name']}", "",
           f"{meta['date']}, device `{meta['device']}`, {'quick (smoke-test sizes)' if meta['quick'] else 'full'}"
           f" run, status {meta['status']}, {_f(meta.get('duration_s'), '{:.0f}')} s.", "",
           *_table(["", "value"], [
               ["device", meta["device_name"]], ["CPU", f"{meta['cpu']} ({meta['cpu_count']} cores, "
                                                        f"{meta['torch_threads']} torch threads)"],
               ["torch / CUDA", f"{v['torch']} / {meta['cuda'] or '-'}"],
               ["gymnasium / SB3 / numpy", f"{v['gymnasium']} / {v['stable_baselines3']} / {v['numpy']}"],
               ["python", meta["python"]], ["git", meta["git_commit"] or "-"],
               ["ViT preset", f"{meta['config']['preset']} (patch {PATCH_SIZE}, {IMAGE_SIZE}x{IMAGE_SIZE})"]]), ""]
    if report.get("targets"):
        out += ["## Targets", ""]
        out += _table(["target", "value", "goal", "result", "measured on"],
                      [[t["name"], _f(t["value"]), f"{t['op']} {t['target']}",
                        ("PASS" if t["pass"] else "FAIL") if t["measured"] else "FAIL (not measured)",
                        (t["variant"] or "-") + (f"; {t['note']}" if t["note"] else "")] for t in report["targets"]])
        out.append("")
    out += ["## Sections", ""]
    out += _table(["section", "status", "duration, s", "note"],
                  [[name, r["status"], _f(r.get("duration_s"), "{:.1f}"), _section_note(r)] for name, r in s.items()])
    out.append("")
    tests = s.get("gpu_tests", {})
    if "counts" in tests:
        c = tests["counts"]
        out += ["## CUDA tests (`pytest -m gpu tests/test_gpu.py`)", "",
                f"{c['passed']} passed, {c['failed']} failed, {c['error']} errors, {c['skipped']} skipped.", ""]
        out += [f"- FAILED {f}" for f in tests["failures"]] + ([""] if tests["failures"] else [])
    out += _step_tables(s)
    eo = s.get("env_overhead", {})
    if eo.get("variants"):
        out += [f"## env.step against the bare step (batch {eo['batch_size']}, the same {eo['k']}-patch mask, "
                f"{eo['obs_type']} observation)", ""]
        out += _table(["variant", "env.step, ms", "bare step, ms", "ratio (median, p25-p75)"],
                      [[x["name"], _f(x.get("env_step_s") and 1e3 * x["env_step_s"], "{:.2f}"),
                        _f(x.get("bare_step_s") and 1e3 * x["bare_step_s"], "{:.2f}"),
                        f"{_f(x.get('ratio'))} ({_f(x.get('ratio_p25'))}-{_f(x.get('ratio_p75'))})"
                        if "ratio" in x else x.get("error", x.get("skipped", "-"))[:120]]
                       for x in eo["variants"]])
        out.append("")
    pr = s.get("profile", {})
    if pr.get("variants"):
        x0 = pr["variants"][0]
        out += [f"## Where a step's time goes (torch.profiler, env.step, batch {x0['batch_size']}, k={x0['k']}, fp32)",
                ""]
        out += _table(["variant", "wall, ms/step", "GPU busy, ms/step", "kernels/step", "top host ops (self ms/step)"],
                      [[x["name"], _f(x.get("wall_ms_per_step"), "{:.2f}"), _f(x.get("device_ms_per_step"), "{:.2f}"),
                        _f(x.get("device_kernels_per_step"), "{:.0f}"),
                        ", ".join(f"{o['op']} {o['self_cpu_ms_per_step']:.2f}" for o in x.get("top_host_ops", [])[:5])
                        or x.get("error", "-")[:120]] for x in pr["variants"]])
        out.append("")
        for x in pr["variants"]:
            if x.get("top_device_ops"):
                out += [f"GPU time by kernel, {x['name']} (ms/step): " + ", ".join(
                    f"{o['op'][:60]} {o['self_device_ms_per_step']:.3f} (x{o['calls_per_step']:.0f})"
                    for o in x["top_device_ops"][:8]), ""]
    ag = s.get("agentvit", {})
    if "agent_share" in ag:
        out += ["## AgentViT's own share", "",
                f"{ag['steps']} steps at batch {ag['batch_size']} (greedy, frequency {ag['frequency']}, {ag['updates']} "
                f"Q-updates, networks on `{ag['agent_device']}`): loop {ag['wall_s']:.2f} s "
                f"({ag['step_ms']:.2f} ms/step), agent {ag['agent_overhead_s']:.3f} s = "
                f"**{100 * ag['agent_share']:.1f}%** of the wall time "
                f"({100 * ag['agent_over_env_train']:.1f}% of env.step time).", ""]
    ep = s.get("epoch", {})
    if ep.get("runs"):
        dp = ep.get("data_pipeline", {})
        out += [f"## One epoch through the env ({ep['images']} images, batch {ep['batch_size']}, "
                f"{ep['steps_per_epoch']} steps; {ep['data']})", "",
                f"Data pipeline alone (randperm, gather, crop + flip, normalise; {ep['steps_per_epoch']} batches): "
                f"{_f(dp.get('median_s'), '{:.3f}')} s" + (f" ({dp['error']})" if "error" in dp else "") + ".", ""]
        out += _table(["selector", "variant", "epoch, s", "step, ms", "images/s", "data pipeline share",
                       "peak GPU memory, MB", "warm-up, s"],
                      [[r["selector"], r["variant"], _f(r.get("wall_s"), "{:.2f}"), _f(r.get("step_ms"), "{:.2f}"),
                        _f(r.get("images_per_s"), "{:.0f}"), _f(r.get("data_pipeline_share"), "{:.1%}"),
                        _f(r.get("peak_memory_mb"), "{:.0f}"), _f(r.get("warmup_s"), "{:.1f}")]
                       if "wall_s" in r else [r["selector"], r["variant"],
                                              (r.get("error") or r.get("skipped", "-"))[:160], "", "", "", "", ""]
                       for r in ep["runs"]])
        out.append("")
    return "\n".join(out)


def _section_note(r: dict) -> str:
    if r["status"] == "error":
        return r.get("error", "")[:200].replace("|", "/").replace("\n", " ")
    if r["status"] == "skipped":
        return r.get("skipped", "")
    bad = [x for x in r.get("variants", []) + r.get("runs", []) if "error" in x or "skipped" in x]
    if bad:
        return "; ".join(f"{x.get('name') or x.get('variant')}: {(x.get('error') or x.get('skipped'))[:100]}"
                         for x in bad).replace("|", "/").replace("\n", " ")
    return ""


def _step_tables(s: dict) -> list[str]:
    variants = [v for name in ("step_time", "step_time_graph", "step_time_compiled")
                for v in s.get(name, {}).get("variants", [])
                if "rows" in v]
    if not variants:
        return []
    out = []
    for b in sorted({v["batch_size"] for v in variants}):
        vs = [v for v in variants if v["batch_size"] == b]
        ks = [r["k"] for r in vs[0]["rows"]]
        rows = {(v["name"], r["k"]): r for v in vs for r in v["rows"]}
        out += [f"## Bare training step, batch {b}: time in ms (ratio to the same variant's full step)", ""]
        out += _table(["k", "ideal k/N"] + [v["name"] for v in vs],
                      [[k, f"{k / ks[0]:.3f}"] + [f"{1e3 * rows[(v['name'], k)]['median_s']:.2f} "
                                                  f"({rows[(v['name'], k)]['ratio_to_full']:.3f})" for v in vs]
                       for k in ks])
        out += ["", f"images/s, batch {b}:", ""]
        out += _table(["k"] + [v["name"] for v in vs],
                      [[k] + [f"{rows[(v['name'], k)]['images_per_s']:.0f}" for v in vs] for k in ks])
        out.append("")
    return out


def write_report(out: Path, report: dict) -> str:
    report["targets"] = evaluate_targets(report)
    atomic_write_json(out / "device_report.json", report)
    text = markdown(report)
    atomic_write_text(out / "device_report.md", text + "\n")
    return text


SECTIONS: list[tuple[str, Callable[[Context, dict], None]]] = [
    ("gpu_tests", section_gpu_tests),
    ("step_time", lambda ctx, rec: section_step_time(ctx, rec, mode="eager")),
    ("step_time_graph", section_step_time_graph),
    ("env_overhead", section_env_overhead),
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

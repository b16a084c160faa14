"""Training-step time against patches kept, for the bare ViT and through the env.

    python -m benchmarks.throughput --preset paper --batch-sizes 16,128 --out results/throughput

For each batch size and each k in 64, 48, 32, 16, 8 patches kept, the time of one training
step:
- ``bare``: a plain `SimpleViT` step on a fixed batch with a fixed mask (embed, forward
  on the kept tokens, cross-entropy, backward, Adam step): the floor the env is held to;
- ``env/batch/<obs>``: ``env.step`` with one mask of k patches for the batch, for the
  observation types pooled, embeddings and attention (the paper's state, reported apart:
  it costs an extra attention block on all patches by definition);
- ``env/image/<obs>``: ``env.step`` with one mask of k patches per image (different
  patches per image), pooled and embeddings;
- ``env/image-uneven/pooled``: per-image masks whose counts vary around k (padding path);
- ``env/count/progress``: the count action (k random patches per image, drawn by the env)
  with the progress observation, what the keep-rate controllers (``keeprate``, ``evolved``)
  step; probed once a run, as ``evolved`` asks;
- ``env/count/progress/compiled``: the same env made with ``compile=True``, beside the
  eager one (asked for by name: it compiles before it is timed);
- ``bare/kept``: the bare step embedding only the kept patches, k random ones per image,
  which is what the count step with the progress observation runs: its floor (asked for
  by name);
- ``bare/kept/compiled``: the same with the whole forward from the images compiled (the
  kept patches' gather and embedding included): what compiling could take off that floor
  (asked for by name: it compiles before it is timed).

Every step is timed side by side in one process, interleaved (each repeat visits every
k in a shuffled order and, within a k, every variant back to back in a shuffled order, so
drift and load from other processes hit all alike), after warm-up; a time is the median
over repeats and an acceptance ratio the median over repeats of the ratio within a
repeat; the device is synchronised around each timing. Reported: each
time as a ratio to the same variant's all-patch step, next to the ideal k/N, and each env
variant over the bare step with the same k (the env's overhead). The acceptance ratios,
the targets the step is held to (dropping patches must make the step really cheaper, and
the env must add little to the bare step), are printed with PASS/FAIL. Writes
OUT/throughput.json (with the meta block) and OUT/throughput.png.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any, Callable, Optional

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

import patchenv  # noqa: F401  (registers the env ids)
from agents.base import NO_PROBE
from benchmarks.bare_step import BareStep
from benchmarks.common import markdown_table, paired_stats, parse_list, pyplot, save_figure
from patchenv import data as data_mod
from patchenv.atomic import atomic_write_json
from patchenv.env import resolve_device
from patchenv.run.meta import meta_block
from patchenv.env.presets import PRESETS
from patchenv.timing import DeviceTimer

PATCH_SIZE = 4  # the paper's 4x4 patches: N = 64 on 32x32 images

# bare variant -> (BareStep's embed, its mode; None: eager, or the env's compile with --compile)
BARE = {"bare": ("all", None), "bare/kept": ("kept", None), "bare/kept/compiled": ("kept", "compile-forward")}
# env variant -> (selection, obs_type, uneven per-image counts, compiled).
# `compiled`: the env made with compile=True whatever --compile says.
ENV_VARIANTS: dict[str, tuple[str, str, bool, bool]] = {
    "env/batch/pooled": ("batch", "pooled", False, False),
    "env/batch/embeddings": ("batch", "embeddings", False, False),
    "env/batch/attention": ("batch", "attention", False, False),
    "env/image/pooled": ("image", "pooled", False, False),
    "env/image/embeddings": ("image", "embeddings", False, False),
    "env/image-uneven/pooled": ("image", "pooled", True, False),
    # keep-rate control (keeprate, evolved): the action is a count, k random patches per
    # image drawn by the env; the progress observation, probed once a run (as evolved asks)
    "env/count/progress": ("count", "progress", False, False),
    # the same step compiled, timed beside the eager one (not a default: it compiles first)
    "env/count/progress/compiled": ("count", "progress", False, True),
}
VARIANTS = [*BARE, *ENV_VARIANTS]  # every name --variants takes
# The embed-all bare step and the env's eager variants (the floors and the compiled ones are asked for by name).
DEFAULT_VARIANTS = ["bare"] + [name for name, spec in ENV_VARIANTS.items() if not spec[3]]
# (name, numerator (variant, k), denominator (variant, k), target): the acceptance ratios. Keeping
# 32 of 64 patches must cost at most 0.55x the full step (so dropping patches really saves
# time), and the env's step at most 1.05x the bare one, per-image masks 1.15x one batch mask
# (so the env adds little).
ACCEPTANCE = (
    ("r32 = bare(32) / bare(64)", ("bare", 32), ("bare", 64), 0.55),
    ("env.step(pooled, batch mask 32) / bare(32)", ("env/batch/pooled", 32), ("bare", 32), 1.05),
    ("env.step(embeddings, batch mask 32) / bare(32)", ("env/batch/embeddings", 32), ("bare", 32), 1.05),
    ("env.step(per-image masks 32) / env.step(batch mask 32)", ("env/image/pooled", 32), ("env/batch/pooled", 32),
     1.15),
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS), help="ViT size (its batch size is ignored)")
    p.add_argument("--batch-sizes", default="16,128", help="comma list")
    p.add_argument("--ks", default="64,48,32,16,8", help="patches kept, comma list (must include all N)")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                   help="comma list of " + ", ".join(VARIANTS) + " (default: " + ", ".join(DEFAULT_VARIANTS) + ")")
    p.add_argument("--repeats", type=int, default=9, help="timed repeats per variant and k (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per variant and k first")
    p.add_argument("--min-time", type=float, default=0.02,
                   help="seconds: steps are timed in groups long enough for the clock (GPU)")
    p.add_argument("--dataset", default="synthetic", help="data the env steps on (timing does not depend on it)")
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", default=None, choices=["bf16"], help="bf16 autocast (env and bare step)")
    p.add_argument("--compile", action="store_true", help="torch.compile the ViT forward (env and bare step)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's own; the suites run with 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/throughput")
    p.add_argument("--no-progress", action="store_true")
    return p


def _masks(rng: np.random.Generator, k: int, n: int, b: int, selection: str, uneven: bool) -> np.ndarray:
    """A fixed random mask keeping k patches: (N,) for the batch, (B, N) per image."""
    if selection == "count":
        return np.int64(k - 1)  # the count action: k - 1 keeps k
    if selection == "batch":
        mask = np.zeros(n, dtype=np.int8)
        mask[rng.choice(n, size=k, replace=False)] = 1
        return mask
    counts = np.full(b, k)
    if uneven:  # counts spread around k (mean ~k), so rows need padding
        spread = max(k // 4, 1)
        counts = np.clip(k + rng.integers(-spread, spread + 1, size=b), 1, n)
    mask = np.zeros((b, n), dtype=np.int8)
    for i, c in enumerate(counts):
        mask[i, rng.choice(n, size=int(c), replace=False)] = 1
    return mask


def time_against_k(steppers: dict[str, Callable[[int], Any]], ks: list[int], timer: DeviceTimer, inner: int,
                   repeats: int, order_rng: np.random.Generator,
                   done: Callable[[], Any] = lambda: None) -> dict[tuple[str, int], list[float]]:
    """The step-time-against-k curve of every stepper (name -> a step keeping k patches):
    (name, k) -> seconds per step over `inner` back-to-back steps, `repeats` of them.
    Interleaved: each repeat visits every k in a shuffled order and, within a k, every
    stepper back to back in a shuffled order, so the steps compared at equal k are timed
    seconds apart and load from other processes and clock drift hit them alike (the device
    report's step time, one stepper, uses it too). `done` is called after each timing."""
    names = list(steppers)
    times: dict[tuple[str, int], list[float]] = {(name, k): [] for name in names for k in ks}
    for _ in range(repeats):
        for k in order_rng.permutation(ks):
            for i in order_rng.permutation(len(names)):
                name, k = names[i], int(k)
                times[(name, k)].append(timer(lambda: steppers[name](k), inner))
                done()
    return times


def spread(times: list[float]) -> dict:
    """Median and quartiles of a timing's repeats, in seconds."""
    t = np.asarray(times)
    return {"median_s": float(np.median(t)), "p25_s": float(np.percentile(t, 25)),
            "p75_s": float(np.percentile(t, 75))}


def measure(batch_size: int, cfg: dict, images, show: bool) -> dict:
    """Time every variant and k for one batch size; returns rows and acceptance ratios."""
    device = torch.device(cfg["device"])
    ks, names = cfg["ks"], cfg["variants"]
    vit = dict(PRESETS[cfg["preset"]])
    vit.pop("batch_size")
    vit_config = dict(image_size=images.image_size, patch_size=PATCH_SIZE, num_classes=images.num_classes,
                      channels=images.channels, **vit)
    n = (images.image_size // PATCH_SIZE) ** 2
    rng = np.random.default_rng(cfg["seed"])
    steppers, masks, envs = {}, {}, []
    for name in (name for name in names if name in ENV_VARIANTS):
        selection, obs_type, uneven, compiled = ENV_VARIANTS[name]
        probe = dict(probe_every=NO_PROBE, val_fraction=0.1) if obs_type == "progress" else {}
        env = gym.make("patchenv/PatchSelection-v1", dataset=images, batch_size=batch_size, device=str(device),
                       patch_size=PATCH_SIZE,
                       selection=selection, obs_type=obs_type, episode_steps=10**9, amp=cfg["amp"],
                       compile=cfg["compile"] or compiled, **probe, **vit)
        env.reset(seed=cfg["seed"])
        envs.append(env)
        masks[name] = {k: _masks(rng, k, n, batch_size, selection, uneven) for k in ks}
        steppers[name] = (lambda env, m: (lambda k: env.step(m[k])))(env, masks[name])
    precision = "bf16" if cfg["amp"] == "bf16" else "fp32"
    for name in (name for name in names if name in BARE):
        embed, mode = BARE[name]
        bare = BareStep(vit_config, batch_size, device, mode or ("compile" if cfg["compile"] else "eager"),
                        cfg["seed"], embed=embed)
        # "all": one mask for the batch (the paper's); "kept": k random patches per image (the count action's)
        selection = "batch" if embed == "all" else "image"
        keeps = {k: bare.keep(_masks(rng, k, n, batch_size, selection, False)) for k in ks}
        steppers[name] = (lambda bare, keeps: (lambda k: bare(keeps[k], precision)))(bare, keeps)
    names = [name for name in names if name in steppers]

    pairs = [(name, k) for name in names for k in ks]
    for name, k in tqdm(pairs, desc=f"B={batch_size} warm-up", disable=not show, leave=False):
        for _ in range(cfg["warmup"]):
            steppers[name](k)
    timer = DeviceTimer(device)
    cheapest = min(timer(lambda: steppers[name](min(ks))) for name in names)
    inner = max(1, math.ceil(cfg["min_time"] / max(cheapest, 1e-9)))
    order_rng = np.random.default_rng(cfg["seed"] + 1)
    with tqdm(total=cfg["repeats"] * len(pairs), desc=f"B={batch_size} timing", disable=not show,
              leave=False) as bar:
        times = time_against_k({name: steppers[name] for name in names}, ks, timer, inner, cfg["repeats"],
                               order_rng, done=lambda: bar.update(1))

    med = {pair: float(np.median(t)) for pair, t in times.items()}
    rows = []
    for name, k in pairs:
        rows.append({
            "variant": name, "k": k, "ideal": k / n, **spread(times[(name, k)]),
            "ratio_to_full": med[(name, k)] / med[(name, n)],
            "overhead_vs_bare": med[(name, k)] / med[("bare", k)] if ("bare", k) in med else None,
            "overhead_vs_bare_kept": med[(name, k)] / med[("bare/kept", k)] if ("bare/kept", k) in med else None,
            "times_s": list(times[(name, k)]),
        })
    acceptance = []
    for label, num, den, target in ACCEPTANCE:
        if num not in times or den not in times:
            continue
        # The decision value: the median over repeats of the ratio within one repeat (side
        # by side, so load that comes and goes cancels out); the ratio of the two medians
        # is reported next to it.
        paired = paired_stats(times[num], times[den])
        acceptance.append({"name": label, "value": paired["ratio"], "target": target,
                           "pass": bool(paired["ratio"] <= target), "ratio_of_medians": med[num] / med[den],
                           "paired_p25": paired["ratio_p25"], "paired_p75": paired["ratio_p75"]})
    for env in envs:
        env.close()
    return {"batch_size": batch_size, "num_patches": n, "inner_steps": inner, "rows": rows,
            "acceptance": acceptance}


def tables(result: dict, names: list[str], ks: list[int]) -> str:
    rows = {(r["variant"], r["k"]): r for r in result["rows"]}
    names = [v for v in names if any((v, k) in rows for k in ks)]
    n = result["num_patches"]
    out = [f"### batch {result['batch_size']} (median of repeats; {result['inner_steps']} step(s) per timing)", "",
           "step time, ms:", "",
           markdown_table(["k"] + names, [[k] + [f"{rows[(v, k)]['median_s'] * 1e3:.1f}" for v in names] for k in ks]),
           "", "ratio to the same variant's full step (ideal k/N):", "",
           markdown_table(["k", "ideal k/N"] + names,
                          [[k, f"{k / n:.3f}"] + [f"{rows[(v, k)]['ratio_to_full']:.3f}" for v in names] for k in ks])]
    env_names = [v for v in names if v not in BARE]
    if "bare" in names and env_names:
        out += ["", "env overhead: env.step / bare step with the same k:", "",
                markdown_table(["k"] + env_names,
                               [[k] + [f"{rows[(v, k)]['overhead_vs_bare']:.3f}" for v in env_names] for k in ks])]
    count_names = [v for v in env_names if v.startswith("env/count/")]
    if "bare/kept" in names and count_names:
        out += ["", "count step overhead: env.step / bare step embedding the same k kept patches:", "",
                markdown_table(["k"] + count_names,
                               [[k] + [f"{rows[(v, k)]['overhead_vs_bare_kept']:.3f}" for v in count_names]
                                for k in ks])]
    if result["acceptance"]:
        out += ["", "acceptance (the targets the step is held to):", "",
                markdown_table(["ratio", "value (median of per-repeat ratios)", "p25-p75", "ratio of medians",
                                "target", "result"],
                               [[a["name"], f"{a['value']:.3f}", f"{a['paired_p25']:.3f}-{a['paired_p75']:.3f}",
                                 f"{a['ratio_of_medians']:.3f}", f"<= {a['target']}", "PASS" if a["pass"] else "FAIL"]
                                for a in result["acceptance"]])]
    return "\n".join(out)


def plot(results: list[dict], names: list[str], path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(2, len(results), figsize=(6 * len(results), 8), squeeze=False)
    for col, result in enumerate(results):
        n = result["num_patches"]
        ax, ax2 = axes[0][col], axes[1][col]
        for i, name in enumerate(names):
            rs = sorted((r for r in result["rows"] if r["variant"] == name), key=lambda r: r["k"])
            if not rs:
                continue
            ks = [r["k"] for r in rs]
            ax.plot(ks, [r["ratio_to_full"] for r in rs], marker="o", color=f"C{i}", label=name)
            if name not in BARE and rs[0]["overhead_vs_bare"] is not None:
                ax2.plot(ks, [r["overhead_vs_bare"] for r in rs], marker="o", color=f"C{i}", label=name)
        ideal = sorted({r["k"] for r in result["rows"]})
        ax.plot(ideal, [k / n for k in ideal], "k--", label="ideal k/N")
        ax.set_title(f"step time / full step, batch {result['batch_size']}")
        ax.set_xlabel("patches kept k")
        ax.set_ylabel("ratio to the all-patch step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax2.axhline(1.0, color="k", linestyle="--", linewidth=1)
        ax2.axhline(1.05, color="r", linestyle=":", linewidth=1, label="target 1.05")
        ax2.set_title(f"env.step / bare step (same k), batch {result['batch_size']}")
        ax2.set_xlabel("patches kept k")
        ax2.set_ylabel("env overhead ratio")
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    names = parse_list(args.variants)
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(VARIANTS)}")
    try:
        batch_sizes, ks = parse_list(args.batch_sizes, int), sorted(set(parse_list(args.ks, int)), reverse=True)
    except ValueError:
        raise SystemExit("--batch-sizes and --ks are comma lists of integers") from None
    if args.repeats < 1 or args.warmup < 0 or not batch_sizes or any(b <= 0 for b in batch_sizes):
        raise SystemExit("--repeats must be >= 1, --warmup >= 0, --batch-sizes positive")
    if args.threads is not None and args.threads < 1:
        raise SystemExit(f"--threads must be a positive integer, got {args.threads}")
    cfg = {"preset": args.preset, "vit": PRESETS[args.preset], "batch_sizes": batch_sizes, "ks": ks,
           "variants": names, "repeats": args.repeats, "warmup": args.warmup, "min_time": args.min_time,
           "dataset": args.dataset, "device": str(resolve_device(args.device)), "amp": args.amp,
           "compile": bool(args.compile), "seed": args.seed}
    images = data_mod.load_dataset(args.dataset)
    n = (images.image_size // PATCH_SIZE) ** 2
    if max(ks) != n or min(ks) < 1:
        raise SystemExit(f"--ks must include {n} (all patches: ratios are taken to the full step), all >= 1")
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads or threads)  # before meta_block, which records the count
    try:
        return _measure_all(args, argv, cfg, images, names, ks, batch_sizes)
    finally:
        torch.set_num_threads(threads)  # the caller's (a test calls main in-process)


def _measure_all(args, argv, cfg: dict, images, names: list, ks: list, batch_sizes: list) -> int:
    from pathlib import Path

    meta = meta_block(cfg["device"], cfg)
    meta["argv"] = list(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    start = time.perf_counter()
    results = []
    for b in batch_sizes:
        if b > len(images.train_y):
            raise SystemExit(f"batch size {b} is larger than the {args.dataset} training set")
        result = measure(b, cfg, images, not args.no_progress)
        results.append(result)
        print(tables(result, names, ks) + "\n", flush=True)
        # Written after every batch size, so a long run keeps what it measured.
        atomic_write_json(out / "throughput.json", {"meta": meta, "results": results})
    plot(results, names, out / "throughput.png")
    print(f"preset {args.preset} on {cfg['device']} ({meta['cpu']}" + (f", {meta['gpu']}" if meta["gpu"] else "")
          + f", {meta['torch_threads']} threads, torch {meta['versions']['torch']}); "
          f"wall time {time.perf_counter() - start:.0f} s")
    print(f"results: {out / 'throughput.json'}, {out / 'throughput.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What a population buys: E training runs as one `PopulationEnv` against the same E runs
stepped one by one.

    python -m benchmarks.population --presets tiny,small,paper --num-envs 1,2,4,8,16,32 --out results/population

For each preset and each E, one cell builds, on one device and data set (synthetic by
default, generated, no files):
- ``population``: one `patchenv.population.PopulationEnv` with E runs; a step trains all
  E runs with one forward, backward and Adam update of the stacked model;
- ``sequential``: E `PatchSelectionEnv`s with their default settings, stepped
  round-robin (one step each per round). On CUDA that is their default path, which
  replays each training step from a CUDA graph: the baseline is the best a run gets alone.
Every env uses ``selection="batch"``, ``obs_type="pooled"`` (a cheap observation, so the
training step dominates) and one fixed action, every other patch kept (N/2), for every
run; the population is reset with seed 0 (run i gets seed i), single env i with seed i.
Episodes are built ``episode_steps=10**6`` long: the default (one epoch: 128 steps of
the tiny preset on 2048 synthetic images) could end inside the timed steps, and the step
after an episode's end is an autoreset that trains nothing, which would flatter the
population. Each side runs ``--warmup`` untimed steps first (at least 2 on CUDA: a single
env captures its graph the second time it sees a shape). Then, ``--repeats`` times, a
population block (``--steps`` population steps) and a sequential block (``--steps``
rounds) run back to back in one process, which one goes first alternating, so drift and
other load hit both alike; the device is synchronised before and after each block.
A rate is in run-steps per second (E x steps / s) and is the median over repeats;
``speedup`` = population rate / sequential rate (the ratio of the two medians).

``peak_memory_mb`` (CUDA): ``torch.cuda.max_memory_allocated`` over the population's
build, reset and warm-up (after ``reset_peak_memory_stats``, before the single envs
exist), the shared data set on the device included. On the CPU it is None and
``process_max_rss_mb`` is the process's peak resident memory so far (every earlier cell
included, so it only grows down the table). A cell that runs out of memory is recorded
with ``error: "out of memory"`` and the next cell runs.

What to expect: on the CPU no real speed-up (a prototype ran at 0.7-0.9x): one thread
computes E models' worth of arithmetic either way and the stacked step's batched matrix
products are no cheaper there; only the tiny preset, whose step is mostly per-step Python
work that a population does once, gains a little (1.3-1.5x at E = 4-8 on one thread,
while small stayed at 0.9-0.96x). On a GPU a small ViT's step is bound by launching
kernels, which a population pays once for E runs. Target on an H100/H200-class GPU: 32
tiny runs as one population at >= 10x the run-steps/s of the same 32 runs one by one
(printed with PASS/FAIL when measured on CUDA).

``--host-profile``: then, for each preset and E, where a population step's time goes on the
host (`benchmarks.host_profile`): milliseconds in torch's top-level operators against the
Python around them (parsing actions, the runs' bookkeeping, the info), per step and per
run. The Python part does not shrink on a faster device, so it bounds a GPU population's
speed-up at large E. Rows under ``host_profile`` in population.json, a second table in
population.md, and OUT/population_host.png.

Writes OUT/population.json (meta block and rows, rewritten after every cell, so a long
run keeps what it measured), OUT/population.md (the table) and OUT/population.png
(speed-up against E, one line per preset).
"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from benchmarks.common import markdown_table, parse_list, pyplot, save_figure, timed
from benchmarks.host_profile import profile_population
from benchmarks.trial_memory import peak_rss_mib
from patchenv import PatchSelectionEnv
from patchenv.atomic import atomic_write_json, atomic_write_text
from patchenv.checks import one_line, out_of_memory
from patchenv.data import DATASETS, DatasetError, load_dataset
from patchenv.env import resolve_device
from patchenv.env.presets import PRESETS
from patchenv.population import PopulationEnv
from patchenv.run.meta import meta_block

EPISODE_STEPS = 10**6  # longer than any timing: no episode end, so no untrained autoreset step
MIN_CUDA_WARMUP = 2  # a single env captures its CUDA graph the second time it sees a shape
TARGET = {"preset": "tiny", "num_envs": 32, "min_speedup": 10.0, "device": "an H100/H200-class GPU"}
QUICK = {"presets": "tiny", "num_envs": "1,2,4", "steps": 3, "warmup": 1, "repeats": 1}
DEFAULTS = {"presets": "tiny,small,paper", "num_envs": "1,2,4,8,16,32", "steps": 10, "warmup": 3, "repeats": 3}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.population", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    # None = not given: --quick fills in its own values, otherwise DEFAULTS.
    p.add_argument("--presets", default=None, help=f"comma list of {', '.join(PRESETS)} (default {DEFAULTS['presets']})")
    p.add_argument("--num-envs", default=None, help=f"comma list of E >= 1 (default {DEFAULTS['num_envs']})")
    p.add_argument("--steps", type=int, default=None, help=f"timed steps per block (default {DEFAULTS['steps']})")
    p.add_argument("--warmup", type=int, default=None, help=f"untimed steps per env first (default {DEFAULTS['warmup']})")
    p.add_argument("--repeats", type=int, default=None,
                   help=f"population/sequential block pairs; medians reported (default {DEFAULTS['repeats']})")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: tiny, E in 1,2,4, --steps 3 --warmup 1 --repeats 1 (each unless given)")
    p.add_argument("--dataset", default="synthetic", choices=DATASETS)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:<index>")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: 1 on the CPU, "
                   "torch's own on CUDA)")
    p.add_argument("--cuda-graph", action="store_true",
                   help="the populations replay their step from CUDA graphs (PopulationEnv(cuda_graph=True); CUDA "
                        "only); the runs one by one keep the single env's default (graphs on CUDA)")
    p.add_argument("--host-profile", action="store_true",
                   help="also profile a population step: Python bookkeeping against torch ops, per preset and E")
    p.add_argument("--out", default="results/population", help="folder for population.json, .md and .png")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def resolve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict:
    """The run's settings from the arguments; a bad one is a one-line argparse error (exit 2)."""
    given = {k: getattr(args, k) for k in DEFAULTS}
    cfg = {k: (v if v is not None else (QUICK if args.quick else DEFAULTS)[k]) for k, v in given.items()}
    presets = parse_list(cfg["presets"])
    unknown = [p for p in presets if p not in PRESETS]
    if unknown or not presets:
        parser.error(f"--presets: unknown preset(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(PRESETS)}")
    try:
        num_envs = parse_list(cfg["num_envs"], int)
    except ValueError:
        parser.error(f"--num-envs must be a comma list of integers, got {cfg['num_envs']!r}")
    if not num_envs or any(e < 1 for e in num_envs):
        parser.error(f"--num-envs: every E must be >= 1, got {cfg['num_envs']!r}")
    if cfg["steps"] < 1 or cfg["repeats"] < 1 or cfg["warmup"] < 0:
        parser.error("--steps and --repeats must be >= 1, --warmup >= 0")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        parser.error(f"--device: {one_line(e)}")
    threads = args.threads if args.threads is not None else (1 if device.type == "cpu" else None)
    if threads is not None:
        torch.set_num_threads(threads)
    if args.cuda_graph and device.type != "cuda":
        parser.error(f"--cuda-graph needs a CUDA device, got {device}")
    warmup = max(cfg["warmup"], MIN_CUDA_WARMUP) if device.type == "cuda" else cfg["warmup"]
    return {"presets": presets, "num_envs": list(dict.fromkeys(num_envs)), "steps": cfg["steps"], "warmup": warmup,
            "repeats": cfg["repeats"], "dataset": args.dataset, "device": str(device),
            "threads": torch.get_num_threads(), "selection": "batch", "obs_type": "pooled",
            "episode_steps": EPISODE_STEPS, "action": "every other patch kept", "quick": bool(args.quick),
            "population_cuda_graph": bool(args.cuda_graph)}


def _env_kwargs(preset: str, images, device: str) -> dict:
    return dict(preset=preset, dataset=images, device=device, selection="batch", obs_type="pooled",
                episode_steps=EPISODE_STEPS)


def _free(device: torch.device) -> None:
    """Drop the previous cell's envs before the next one is built (and its memory counted)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def measure_cell(preset: str, num_envs: int, cfg: dict, images) -> dict:
    """Time the population and the sequential runs of one (preset, E); returns the row."""
    device = torch.device(cfg["device"])
    steps, kwargs = cfg["steps"], _env_kwargs(preset, images, cfg["device"])
    envs: list = []
    try:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        population = PopulationEnv(num_envs, **kwargs, cuda_graph=bool(cfg.get("population_cuda_graph")))
        envs.append(population)
        population.reset(seed=0)
        mask = np.zeros(population.runs[0].num_patches, dtype=np.int8)
        mask[::2] = 1
        actions = np.tile(mask, (num_envs, 1))
        for _ in range(cfg["warmup"]):
            population.step(actions)
        peak = None
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device) / 2**20

        singles = [PatchSelectionEnv(**kwargs) for _ in range(num_envs)]
        envs.extend(singles)
        for i, env in enumerate(singles):
            env.reset(seed=i)
        for _ in range(cfg["warmup"]):
            for env in singles:
                env.step(mask)

        def population_block():
            for _ in range(steps):
                population.step(actions)

        def sequential_block():
            for _ in range(steps):
                for env in singles:
                    env.step(mask)

        rates: dict[str, list[float]] = {"population": [], "sequential": []}
        blocks = {"population": population_block, "sequential": sequential_block}
        for r in range(cfg["repeats"]):
            # Alternate which side goes first, so a slow start or a trend in the load hits both alike.
            for name in (("population", "sequential") if r % 2 == 0 else ("sequential", "population")):
                rates[name].append(num_envs * steps / timed(blocks[name], device))
    finally:
        for env in envs:
            env.close()
    pop, seq = statistics.median(rates["population"]), statistics.median(rates["sequential"])
    return {**_row_head(preset, num_envs, cfg), "steps_per_s_population": pop, "steps_per_s_sequential": seq,
            "speedup": pop / seq, "population_rates": rates["population"], "sequential_rates": rates["sequential"],
            "peak_memory_mb": peak, "process_max_rss_mb": peak_rss_mib(), "error": None}


def _row_head(preset: str, num_envs: int, cfg: dict) -> dict:
    return {"preset": preset, "num_envs": num_envs, "device": cfg["device"], "threads": cfg["threads"],
            "steps": cfg["steps"], "warmup": cfg["warmup"], "repeats": cfg["repeats"]}


def error_row(preset: str, num_envs: int, cfg: dict, error: str) -> dict:
    return {**_row_head(preset, num_envs, cfg), "steps_per_s_population": None, "steps_per_s_sequential": None,
            "speedup": None, "population_rates": [], "sequential_rates": [], "peak_memory_mb": None,
            "process_max_rss_mb": peak_rss_mib(), "error": error}


def _fmt(value: Optional[float], spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[dict]) -> str:
    cuda = any(str(r["device"]).startswith("cuda") for r in rows)
    memory = "peak MB (population)" if cuda else "process max RSS MB"
    header = ["preset", "E", "device", "threads", "population run-steps/s", "sequential run-steps/s", "speed-up",
              memory, "error"]
    body = [[r["preset"], r["num_envs"], r["device"], r["threads"], _fmt(r["steps_per_s_population"], ".1f"),
             _fmt(r["steps_per_s_sequential"], ".1f"),
             "-" if r["speedup"] is None else f"{r['speedup']:.2f}x",
             _fmt(r["peak_memory_mb"] if cuda else r["process_max_rss_mb"], ".0f"), r["error"] or ""]
            for r in rows]
    return markdown_table(header, body)


def target_check(rows: list[dict]) -> Optional[dict]:
    """The GPU target's row, judged only on CUDA (the CPU has no target)."""
    for r in rows:
        if (r["preset"], r["num_envs"]) == (TARGET["preset"], TARGET["num_envs"]) and r["speedup"] is not None:
            on_gpu = str(r["device"]).startswith("cuda")
            return {**TARGET, "speedup": r["speedup"], "pass": (r["speedup"] >= TARGET["min_speedup"]) if on_gpu
                    else None}
    return None


def host_table(rows: list[dict]) -> str:
    header = ["preset", "E", "wall ms/step", "torch ops ms", "Python ms", "Python ms per run", "Python share"]
    body = [[r["preset"], r["num_envs"], f"{r['wall_ms']:.2f}", f"{r['torch_ms']:.2f}", f"{r['python_ms']:.2f}",
             f"{r['python_ms_per_run']:.3f}", f"{r['python_ms'] / (r['python_ms'] + r['torch_ms']):.0%}"]
            for r in rows]
    return markdown_table(header, body)


def host_plot(rows: list[dict], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for preset in dict.fromkeys(r["preset"] for r in rows):
        mine = sorted((r["num_envs"], r["python_ms"], r["torch_ms"]) for r in rows if r["preset"] == preset)
        es = [m[0] for m in mine]
        ax.plot(es, [m[1] for m in mine], marker="o", label=f"{preset}: Python")
        ax.plot(es, [m[2] for m in mine], marker="s", ls="--", label=f"{preset}: torch ops")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    es = sorted({r["num_envs"] for r in rows})
    ax.set_xticks(es, [str(e) for e in es])
    ax.set_xlabel("E (runs)")
    ax.set_ylabel("ms per population step (host)")
    ax.set_title("Where a population step's host time goes", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def plot(rows: list[dict], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    measured = [r for r in rows if r["speedup"] is not None]
    for preset in dict.fromkeys(r["preset"] for r in rows):
        mine = sorted((r["num_envs"], r["speedup"]) for r in measured if r["preset"] == preset)
        if mine:
            ax.plot(*zip(*mine), marker="o", label=preset)
    ax.axhline(1.0, ls="--", color="grey", lw=1, label="no speed-up")
    ax.set_xscale("log", base=2)
    es = sorted({r["num_envs"] for r in rows})
    ax.set_xticks(es, [str(e) for e in es])
    ax.set_xlabel("E (runs)")
    ax.set_ylabel("speed-up (population / one by one)")
    device = rows[0]["device"] if rows else "?"
    ax.set_title(f"PopulationEnv run-steps/s over sequential, {device}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = resolve(args, parser)
    device = torch.device(cfg["device"])
    try:
        images = load_dataset(cfg["dataset"]).to(device)  # loaded and moved once; every env shares it
    except (DatasetError, OSError, ValueError) as e:  # a missing or broken data set: the loader's message
        raise SystemExit(f"cannot load data set {cfg['dataset']!r}: {one_line(e)}") from None
    meta = meta_block(device, cfg, "running")
    meta["argv"] = list(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    start = time.perf_counter()
    rows: list[dict] = []
    cells = [(p, e) for p in cfg["presets"] for e in cfg["num_envs"]]
    for preset, num_envs in tqdm(cells, desc="population benchmark", disable=args.no_progress):
        _free(device)
        try:
            row = measure_cell(preset, num_envs, cfg, images)
        except (MemoryError, RuntimeError) as e:
            if not out_of_memory(e):
                raise
            row = error_row(preset, num_envs, cfg, "out of memory")
        rows.append(row)
        atomic_write_json(out / "population.json", {"meta": meta, "rows": rows, "target": target_check(rows)})
    _free(device)
    host_rows: list[dict] = []
    if args.host_profile:
        for preset, num_envs in tqdm(cells, desc="host profile", disable=args.no_progress):
            _free(device)
            host_rows.append(profile_population(num_envs, preset, cfg["steps"], cfg["warmup"], cfg["repeats"],
                                                cfg["device"], images))
            atomic_write_json(out / "population.json", {"meta": meta, "rows": rows, "target": target_check(rows),
                                                        "host_profile": host_rows})
    meta["status"] = "complete"
    meta["wall_time_s"] = time.perf_counter() - start
    target = target_check(rows)
    atomic_write_json(out / "population.json", {"meta": meta, "rows": rows, "target": target,
                                                "host_profile": host_rows or None})
    text = table(rows)
    if host_rows:
        host_plot(host_rows, out / "population_host.png")
        text += "\n\nHost time of one population step (torch.profiler; Python = the step's time outside " \
                "torch's top-level operators):\n\n" + host_table(host_rows)
    atomic_write_text(out / "population.md", text + "\n")
    plot(rows, out / "population.png")
    print(text)
    if target is not None and target["pass"] is not None:
        verdict = "PASS" if target["pass"] else "FAIL"
        print(f"target: {TARGET['num_envs']} {TARGET['preset']} runs as one population >= "
              f"{TARGET['min_speedup']:g}x one by one: {target['speedup']:.2f}x {verdict}")
    print(f"on {cfg['device']} ({meta['cpu']}" + (f", {meta['gpu']}" if meta["gpu"] else "")
          + f", {cfg['threads']} threads, torch {meta['versions']['torch']}); wall time {meta['wall_time_s']:.0f} s")
    print(f"results: {out / 'population.json'}, {out / 'population.md'}, {out / 'population.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

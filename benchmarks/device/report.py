"""The device report itself, read off the measured sections: the targets (PASS or FAIL),
the Markdown, the meta block, and device_report.json/.md written together.

Targets, for two variants of each: "default" (an env built with no speed flags: fp32, CUDA
graphs on CUDA since `cuda_graph=None`, eager on the CPU) and "fastest" (the best flags the
report measured). A target whose section was not measured is FAIL ("not measured").
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Optional

import torch

from benchmarks.common import markdown_table
from benchmarks.device.harness import IMAGE_SIZE, PATCH_SIZE, Context
from patchenv.atomic import atomic_write_json, atomic_write_text
from patchenv.run.meta import meta_block


# -- the files ---------------------------------------------------------------------------------
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


def write_report(out: Path, report: dict) -> str:
    report["targets"] = evaluate_targets(report)
    atomic_write_json(out / "device_report.json", report)
    text = markdown(report)
    atomic_write_text(out / "device_report.md", text + "\n")
    return text


# -- the targets -------------------------------------------------------------------------------
# (name stem, default goal, fastest goal); the names are those of the earlier reports.
GOALS = {"r32": (0.60, 0.55), "overhead": (1.05, 1.05), "epoch": (3.0, 1.0), "pipeline": (None, 0.05)}


def default_mode(report: dict) -> str:
    """The step an env takes without speed flags on the report's device."""
    return "graph" if str(report["meta"].get("device", "")).startswith("cuda") else "eager"


def evaluate_targets(report: dict) -> list[dict]:
    s = report["sections"]
    cfg = report["meta"]["config"]
    mode = default_mode(report)
    targets = []

    def add(name, value, goal, op, variant, note=None):
        measured = value is not None
        ok = bool(measured and (value <= goal if op == "<=" else value < goal))
        targets.append({"name": name, "value": value, "target": goal, "op": op, "pass": ok, "measured": measured,
                        "variant": variant, "note": note})

    def both(name, measured: dict, key: str, op: str = "<=", note=None) -> None:
        """`measured`: variant name ("fp32 graph", ...) -> value; lower is better."""
        default_goal, fastest_goal = GOALS[key]
        default = f"fp32 {mode}"
        add(name, measured.get(default), default_goal, op, f"default ({default})", note)
        best = min(measured, key=measured.get) if measured else None
        add(name, measured.get(best), fastest_goal, op, f"fastest ({best})" if best else "fastest", note)

    b0, n = cfg["batch_sizes"][0], cfg["ks"][0]
    r32 = {}
    for section in ("step_time", "step_time_graph"):
        for v in s.get(section, {}).get("variants", []):
            if v.get("batch_size") == b0 and "rows" in v:
                ratio = next((r["ratio_to_full"] for r in v["rows"] if r["k"] == 32), None)
                if ratio is not None:
                    r32[f"{v['precision']} {v['mode']}"] = ratio
    both(f"step(32 of {n}) / step({n}), batch {b0}", r32, "r32")

    overhead = {v["name"]: v["ratio"] for v in s.get("env_overhead", {}).get("variants", [])
                if v.get("ratio") is not None}
    both("env.step / bare step (same k=32 mask)", overhead, "overhead")

    epoch = s.get("epoch", {})
    walls = {r["variant"]: r["wall_s"] for r in epoch.get("runs", []) if r.get("selector") == "all" and r.get("wall_s")}
    images, batch = epoch.get("images", cfg["epoch_images"]), epoch.get("batch_size", cfg["epoch_batch"])
    both(f"all-patch epoch ({images} images, batch {batch}), s", walls, "epoch",
         note=None if images == 50_000 else "not a CIFAR-10-sized epoch (--quick)")
    fastest: Optional[str] = min(walls, key=walls.get) if walls else None
    pipeline = epoch.get("data_pipeline", {}).get("median_s")
    share = pipeline / walls[fastest] if (fastest and pipeline is not None) else None
    add("data pipeline / all-patch epoch", share, GOALS["pipeline"][1], "<", f"fastest ({fastest} epoch)"
        if fastest else "fastest")
    return targets


# -- the Markdown ------------------------------------------------------------------------------
def table(header: list, rows: list) -> list[str]:
    """A Markdown table as lines, to be joined with the report's other lines."""
    return markdown_table(header, rows).split("\n")


def _f(value, fmt="{:.3f}") -> str:
    return "-" if value is None else fmt.format(value)


def markdown(report: dict) -> str:
    meta, s = report["meta"], report["sections"]
    v = meta["versions"]
    out = [f"# patchenv device report: {meta['device_name']}", "",
           f"{meta['date']}, device `{meta['device']}`, {'quick (smoke-test sizes)' if meta['quick'] else 'full'}"
           f" run, status {meta['status']}, {_f(meta.get('duration_s'), '{:.0f}')} s.", "",
           *table(["", "value"], [
               ["device", meta["device_name"]], ["CPU", f"{meta['cpu']} ({meta['cpu_count']} cores, "
                                                        f"{meta['torch_threads']} torch threads)"],
               ["torch / CUDA", f"{v['torch']} / {meta['cuda'] or '-'}"],
               ["gymnasium / SB3 / numpy", f"{v['gymnasium']} / {v['stable_baselines3']} / {v['numpy']}"],
               ["python", meta["python"]], ["git", meta["git_commit"] or "-"],
               ["ViT preset", f"{meta['config']['preset']} (patch {PATCH_SIZE}, {IMAGE_SIZE}x{IMAGE_SIZE})"]]), ""]
    if report.get("targets"):
        out += ["## Targets", ""]
        out += table(["target", "value", "goal", "result", "measured on"],
                      [[t["name"], _f(t["value"]), f"{t['op']} {t['target']}",
                        ("PASS" if t["pass"] else "FAIL") if t["measured"] else "FAIL (not measured)",
                        (t["variant"] or "-") + (f"; {t['note']}" if t["note"] else "")] for t in report["targets"]])
        out.append("")
    out += ["## Sections", ""]
    out += table(["section", "status", "duration, s", "note"],
                  [[name, r["status"], _f(r.get("duration_s"), "{:.1f}"), _section_note(r)] for name, r in s.items()])
    out.append("")
    tests = s.get("gpu_tests", {})
    if "counts" in tests:
        c = tests["counts"]
        out += ["## CUDA tests (`pytest -m gpu tests/model/test_gpu.py`)", "",
                f"{c['passed']} passed, {c['failed']} failed, {c['error']} errors, {c['skipped']} skipped.", ""]
        out += [f"- FAILED {f}" for f in tests["failures"]] + ([""] if tests["failures"] else [])
    out += _step_tables(s)
    eo = s.get("env_overhead", {})
    if eo.get("variants"):
        out += [f"## env.step against the bare step (batch {eo['batch_size']}, the same {eo['k']}-patch mask, "
                f"{eo['obs_type']} observation)", ""]
        out += table(["variant", "env.step, ms", "bare step, ms", "ratio (median, p25-p75)"],
                      [[x["name"], _f(x.get("env_step_s") and 1e3 * x["env_step_s"], "{:.2f}"),
                        _f(x.get("bare_step_s") and 1e3 * x["bare_step_s"], "{:.2f}"),
                        f"{_f(x.get('ratio'))} ({_f(x.get('ratio_p25'))}-{_f(x.get('ratio_p75'))})"
                        if "ratio" in x else x.get("error", x.get("skipped", "-"))[:120]]
                       for x in eo["variants"]])
        out.append("")
    peer = s.get("peer", {})
    if peer.get("median_s"):
        med, heads = peer["median_s"], peer["head_dim"]
        out += [f"## The peer: timm's ViT with PatchDropout (batch {peer['batch_size']}, {peer['precision']} "
                f"{peer['mode']}; tokens {peer['timm_tokens']['timm_64']} and {peer['timm_tokens']['timm_32']}; "
                f"head width timm {heads['timm']}, SimpleViT {heads['simplevit']})", ""]
        out += table(["step", "ms"], [[name, _f(1e3 * t, "{:.2f}")] for name, t in med.items()])
        out += [""] + table(["ratio", "median (p25-p75)"],
                            [[name, f"{_f(r['ratio'])} ({_f(r['ratio_p25'])}-{_f(r['ratio_p75'])})"]
                             for name, r in peer["ratios"].items()])
        out.append("")
    pr = s.get("profile", {})
    if pr.get("variants"):
        x0 = pr["variants"][0]
        out += [f"## Where a step's time goes (torch.profiler, env.step, batch {x0['batch_size']}, k={x0['k']}, fp32)",
                ""]
        out += table(["variant", "wall, ms/step", "GPU busy, ms/step", "kernels/step", "top host ops (self ms/step)"],
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
        out += table(["selector", "variant", "epoch, s", "step, ms", "images/s", "data pipeline share",
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
        out += table(["k", "ideal k/N"] + [v["name"] for v in vs],
                      [[k, f"{k / ks[0]:.3f}"] + [f"{1e3 * rows[(v['name'], k)]['median_s']:.2f} "
                                                  f"({rows[(v['name'], k)]['ratio_to_full']:.3f})" for v in vs]
                       for k in ks])
        out += ["", f"images/s, batch {b}:", ""]
        out += table(["k"] + [v["name"] for v in vs],
                      [[k] + [f"{rows[(v['name'], k)]['images_per_s']:.0f}" for v in vs] for k in ks])
        out.append("")
    return out

"""The report's files: its meta block, and device_report.json/.md written together."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from benchmarks.device.context import Context
from benchmarks.device.markdown import markdown
from benchmarks.device.targets import evaluate_targets
from patchenv.atomic import atomic_write_json, atomic_write_text
from patchenv.run.meta import meta_block


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

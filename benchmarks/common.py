"""Pieces both benchmarks share: ViT presets, the ``meta`` block, atomic writes, timing.

Every result file carries the same ``meta``: date, hardware (CPU model, core count,
torch threads, GPU model), library versions, the git commit and the full configuration,
so a number can always be traced to the machine and code that produced it.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import subprocess
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import numpy as np
import torch

from patchenv.atomic import atomic_write, atomic_write_text
from patchenv.presets import PRESETS  # noqa: F401  (re-exported for the scripts)


def parse_list(text: str, kind: Callable = str) -> list:
    """'a,b, c' -> ['a', 'b', 'c'] (converted with `kind`); empty items are dropped."""
    return [kind(item.strip()) for item in str(text).split(",") if item.strip()]


# -- meta -----------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> Optional[str]:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> Optional[str]:
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def meta_block(device: Union[str, torch.device], config: dict) -> dict:
    """Hardware, versions, date and the full configuration of a benchmark run."""
    device = torch.device(device)
    gpu = None
    if device.type == "cuda":
        gpu = torch.cuda.get_device_name(device)
    elif torch.cuda.is_available():
        gpu = f"{torch.cuda.get_device_name(0)} (present, not used)"
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "device": str(device),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: _version(dist) for name, dist in (
            ("torch", "torch"), ("gymnasium", "gymnasium"), ("stable_baselines3", "stable-baselines3"),
            ("numpy", "numpy"), ("patchenv", "patchenv"))},
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "git_commit": _git_commit(),
        "config": config,
    }


# -- atomic writes ------------------------------------------------------------------------
def jsonable(obj: Any) -> Any:
    """Plain JSON values: numpy scalars to Python, non-finite floats to None (null)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: Union[str, os.PathLike], obj: Any) -> None:
    atomic_write_text(path, json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n")


def write_csv(path: Union[str, os.PathLike], rows: Sequence[dict], fields: Sequence[str]) -> None:
    """One row per dict, columns `fields`; None is written as an empty cell."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if jsonable(row.get(k)) is None else jsonable(row.get(k))) for k in fields})
    atomic_write_text(path, buf.getvalue())


def save_figure(fig, path: Union[str, os.PathLike]) -> None:
    """fig.savefig through a temp file and a rename."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=120, bbox_inches="tight"))


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed), or a clear error."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover
        raise SystemExit("the plots need matplotlib: pip install matplotlib") from e
    return plt


# -- timing and statistics ----------------------------------------------------------------
def synchronize(device: Union[str, torch.device]) -> None:
    """Wait for queued GPU work so the wall clock covers it (no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: Union[str, torch.device], inner: int = 1) -> float:
    """Seconds per call of `fn`, averaged over `inner` back-to-back calls, device synchronised
    before and after (note: two CPU-GPU sync points, outside the timed work)."""
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    synchronize(device)
    return (time.perf_counter() - t0) / inner


def mean_std(values: Iterable[Optional[float]]) -> tuple[Optional[float], Optional[float], int]:
    """Mean, sample standard deviation (0 for one value) and count of the non-None values."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None, None, 0
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
    return float(np.mean(vals)), std, len(vals)


def fmt_mean_std(values: Iterable[Optional[float]], fmt: str = "{:.3f}", scale: float = 1.0) -> str:
    mean, std, n = mean_std(values)
    if n == 0:
        return "-"
    if n == 1:
        return fmt.format(mean * scale)
    return f"{fmt.format(mean * scale)} ± {fmt.replace('+', '').format(std * scale)}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)

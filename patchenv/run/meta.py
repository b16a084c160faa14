"""The ``meta`` block every result file carries (``metrics.json``, ``results.json``, reports).

Date, hardware (CPU model, core count, torch threads, GPU model), library versions, the
git commit and the full configuration, plus the run's ``status``, so a number can always
be traced to the machine and code that produced it. ``status`` has one vocabulary:
``running`` (written while work goes on), ``interrupted`` (stopped; ``--resume``
continues), ``complete``.
"""
from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Optional, Union

import torch

# paused: a run that reached the end of its turn in an interleaved sweep and waits in its
# checkpoint for the next; complete: the run's whole budget is done.
STATUSES = ("running", "paused", "interrupted", "complete")


def cpu_model() -> str:
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


def git_commit() -> Optional[str]:
    """HEAD of the checkout this package runs from, ``+dirty`` when tracked files changed.
    ``$PATCHENV_GIT_COMMIT``, when set, wins: a copy of the checkout sent to another machine
    may carry no git metadata, or stale metadata."""
    root = Path(__file__).resolve().parent.parent
    fallback = os.environ.get("PATCHENV_GIT_COMMIT") or None
    if fallback:
        return fallback
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return fallback
    if head.returncode != 0:
        return fallback
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def meta_block(device: Union[str, torch.device], config: dict, status: str = "running") -> dict:
    """Hardware, versions, date, git commit, the full configuration and the status."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    device = torch.device(device)
    gpu = None
    if device.type == "cuda":
        gpu = torch.cuda.get_device_name(device)
    elif torch.cuda.is_available():
        gpu = f"{torch.cuda.get_device_name(0)} (present, not used)"
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "status": status,
        "cpu": cpu_model(),
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
        "git_commit": git_commit(),
        "config": config,
    }

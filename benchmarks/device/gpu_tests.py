"""The CUDA tests, the report's first section (``gpu_tests``): ``pytest -m gpu tests/model/test_gpu.py`` in a subprocess, its JUnit
XML read back into counts and each failure's short text."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from benchmarks.device.harness import ROOT, Context


def section_gpu_tests(ctx: Context, rec: dict) -> None:
    test_file = ROOT / "tests" / "model" / "test_gpu.py"
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

"""The report's targets, PASS or FAIL, read off the measured sections, for two variants of
each: "default" (an env built with no speed flags: fp32, CUDA graphs on CUDA since
`cuda_graph=None`, eager on the CPU) and "fastest" (the best flags the report measured).
A target whose section was not measured is FAIL ("not measured")."""
from __future__ import annotations

from typing import Optional

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

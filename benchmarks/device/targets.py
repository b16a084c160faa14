"""The report's targets, PASS or FAIL, read off the measured sections; a target whose
section was not measured is FAIL ("not measured")."""
from __future__ import annotations


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

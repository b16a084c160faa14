"""benchmarks.device.targets and markdown on a small hand-made report."""
from benchmarks.device.markdown import table
from benchmarks.device.targets import evaluate_targets

CONFIG = {"batch_sizes": [16], "ks": [64, 32], "epoch_images": 1024, "epoch_batch": 16}


def test_targets_read_off_a_fixed_report():
    report = {"meta": {"config": CONFIG}, "sections": {
        "step_time": {"variants": [
            {"batch_size": 16, "precision": "fp32", "rows": [{"k": 64, "ratio_to_full": 1.0},
                                                             {"k": 32, "ratio_to_full": 0.5}]},
            {"batch_size": 16, "precision": "bf16", "rows": [{"k": 32, "ratio_to_full": 0.9}]}]},
        "env_overhead": {"variants": [{"precision": "fp32", "mode": "eager", "ratio": 1.10}]},
        "epoch": {"images": 1024, "batch_size": 16, "data_pipeline": {"median_s": 0.2}, "runs": [
            {"selector": "all", "variant": "fp32 eager", "wall_s": 5.0},
            {"selector": "all", "variant": "bf16 eager", "wall_s": 2.0},
            {"selector": "random:k=32", "variant": "fp32 eager", "wall_s": 1.0}]}}}
    got = [(t["name"], t["value"], t["pass"], t["variant"]) for t in evaluate_targets(report)]
    assert got == [
        ("step(32 of 64) / step(64), batch 16", 0.5, True, "fp32 eager, batch 16"),  # fp32 only: bf16's 0.9 unread
        ("env.step / bare step (same k=32 mask)", 1.10, False, "fp32 eager"),  # above 1.05
        ("data pipeline / all-patch epoch", 0.1, False, "bf16 eager epoch"),  # 0.2 s of the fastest all epoch, 2 s
        ("all-patch epoch (1024 images, batch 16), s", 2.0, True, "bf16 eager")]  # random's 1 s is no all epoch
    assert evaluate_targets(report)[-1]["note"] == "not a CIFAR-10-sized epoch (--quick)"


def test_targets_of_sections_never_measured_fail_as_not_measured():
    targets = evaluate_targets({"meta": {"config": CONFIG}, "sections": {}})
    assert [(t["value"], t["measured"], t["pass"]) for t in targets] == [(None, False, False)] * 4
    assert targets[-1]["name"] == "all-patch epoch (1024 images, batch 16), s"


def test_a_markdown_table_as_lines():
    assert table(["k", "ms"], [[64, "1.00"], [32, "0.50"]]) == ["| k | ms |", "|---|---|", "| 64 | 1.00 |",
                                                              "| 32 | 0.50 |"]

"""benchmarks.device.report: the targets and the Markdown on a small hand-made report."""
from benchmarks.device.report import evaluate_targets, table

CONFIG = {"batch_sizes": [16], "ks": [64, 32], "epoch_images": 1024, "epoch_batch": 16}


def test_targets_read_off_a_fixed_report_for_the_default_and_the_fastest_variant():
    """A CPU report: the default is the eager fp32 step; the fastest is the best measured."""
    report = {"meta": {"config": CONFIG, "device": "cpu"}, "sections": {
        "step_time": {"variants": [
            {"batch_size": 16, "precision": "fp32", "mode": "eager", "rows": [{"k": 64, "ratio_to_full": 1.0},
                                                                              {"k": 32, "ratio_to_full": 0.58}]},
            {"batch_size": 16, "precision": "bf16", "mode": "eager", "rows": [{"k": 32, "ratio_to_full": 0.5}]},
            {"batch_size": 64, "precision": "fp32", "mode": "eager", "rows": [{"k": 32, "ratio_to_full": 0.1}]}]},
        "env_overhead": {"variants": [{"name": "fp32 eager", "precision": "fp32", "mode": "eager", "ratio": 1.10},
                                      {"name": "bf16 eager", "precision": "bf16", "mode": "eager", "ratio": 1.04}]},
        "epoch": {"images": 1024, "batch_size": 16, "data_pipeline": {"median_s": 0.2}, "runs": [
            {"selector": "all", "variant": "fp32 eager", "wall_s": 5.0},
            {"selector": "all", "variant": "bf16 eager", "wall_s": 2.0},
            {"selector": "random:k=32", "variant": "fp32 eager", "wall_s": 1.0}]}}}
    got = [(t["name"], t["variant"], t["value"], t["target"], t["pass"]) for t in evaluate_targets(report)]
    r32, overhead, epoch = ("step(32 of 64) / step(64), batch 16", "env.step / bare step (same k=32 mask)",
                            "all-patch epoch (1024 images, batch 16), s")
    assert got == [
        (r32, "default (fp32 eager)", 0.58, 0.60, True),  # batch 64's 0.1 is not batch 16's
        (r32, "fastest (bf16 eager)", 0.5, 0.55, True),
        (overhead, "default (fp32 eager)", 1.10, 1.05, False),
        (overhead, "fastest (bf16 eager)", 1.04, 1.05, True),
        (epoch, "default (fp32 eager)", 5.0, 3.0, False),
        (epoch, "fastest (bf16 eager)", 2.0, 1.0, False),  # random's 1 s is no all-patch epoch
        ("data pipeline / all-patch epoch", "fastest (bf16 eager epoch)", 0.1, 0.05, False)]  # 0.2 s of 2 s
    assert [t["note"] for t in evaluate_targets(report)][4:6] == ["not a CIFAR-10-sized epoch (--quick)"] * 2


def test_on_cuda_the_default_variant_is_the_graphed_step():
    report = {"meta": {"config": CONFIG, "device": "cuda:0"}, "sections": {
        "env_overhead": {"variants": [{"name": "fp32 eager", "ratio": 1.3}, {"name": "fp32 graph", "ratio": 1.02}]}}}
    overhead = [t for t in evaluate_targets(report) if t["name"].startswith("env.step")]
    assert [(t["variant"], t["value"]) for t in overhead] == [("default (fp32 graph)", 1.02),
                                                              ("fastest (fp32 graph)", 1.02)]


def test_targets_of_sections_never_measured_fail_as_not_measured():
    targets = evaluate_targets({"meta": {"config": CONFIG, "device": "cpu"}, "sections": {}})
    assert [(t["value"], t["measured"], t["pass"]) for t in targets] == [(None, False, False)] * 7
    assert [t["variant"].split(" ")[0] for t in targets] == ["default", "fastest"] * 3 + ["fastest"]


def test_a_markdown_table_as_lines():
    assert table(["k", "ms"], [[64, "1.00"], [32, "0.50"]]) == ["| k | ms |", "|---|---|", "| 64 | 1.00 |",
                                                              "| 32 | 0.50 |"]

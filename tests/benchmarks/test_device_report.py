"""python -m benchmarks.device_report on the CPU at smoke-test size: every section runs (the gpu
tests skip), and the JSON has the structure the GPU run will be read with. The formulas
(ratios, targets, JUnit counts) are checked on hand-made inputs in test_device_timing.py and
test_device_targets.py."""
import json
import math

import pytest

from benchmarks import device_report

SECTIONS = [name for name, _ in device_report.SECTIONS]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("device")
    # a generous budget: on a loaded 2-core machine the quick sizes can outlast the default 110 s
    argv = ["--device", "cpu", "--quick", "--out", str(out), "--no-progress", "--budget-s", "600"]
    assert device_report.main(argv) == 0
    return out, json.loads((out / "device_report.json").read_text())


def positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def test_meta_names_the_device_and_versions(report):
    _, r = report
    meta = r["meta"]
    assert meta["device"] == "cpu" and meta["device_name"].startswith("CPU") and meta["cpu"]
    assert meta["status"] == "complete" and meta["quick"] is True and meta["date"]
    for lib in ("torch", "gymnasium", "stable_baselines3", "numpy"):
        assert meta["versions"][lib]
    assert meta["python"] and "cuda" in meta and "git_commit" in meta
    assert meta["config"]["preset"] == "tiny" and meta["config"]["ks"][0] == 64
    assert positive(meta["duration_s"])


def test_every_section_is_present_and_timed(report):
    _, r = report
    assert list(r["sections"]) == SECTIONS
    for name, s in r["sections"].items():
        assert s["status"] in ("ok", "skipped"), (name, s.get("error"))
        assert s["duration_s"] >= 0
    # compile is skipped at --quick on a CPU, CUDA graphs without CUDA; everything else runs
    assert [n for n, s in r["sections"].items() if s["status"] == "skipped"] == ["step_time_graph",
                                                                                  "step_time_compiled"]


def test_gpu_tests_ran_and_skipped_without_cuda(report):
    _, r = report
    t = r["sections"]["gpu_tests"]
    assert t["returncode"] == 0 and t["failures"] == []
    assert t["counts"]["skipped"] == len(t["tests"]) >= 8 and t["counts"]["passed"] == 0


def test_step_time_ratios(report):
    _, r = report
    s = r["sections"]["step_time"]
    names = {(v["batch_size"], v["precision"]) for v in s["variants"]}
    assert names == {(16, "fp32"), (16, "bf16")}
    for v in s["variants"]:
        assert [row["k"] for row in v["rows"]] == [64, 48, 32, 16, 8]
        full = v["rows"][0]
        assert full["ratio_to_full"] == 1.0  # a paired ratio of the full step to itself
        for row in v["rows"]:
            assert positive(row["median_s"]) and positive(row["ratio_to_full"]) and positive(row["images_per_s"])
            assert len(row["times_s"]) == v["repeats"] >= 3


def test_env_overhead_agentvit_and_epoch(report):
    _, r = report
    s = r["sections"]
    (eo,) = s["env_overhead"]["variants"]
    assert positive(eo["ratio"]) and positive(eo["env_step_s"]) and positive(eo["bare_step_s"])
    ag = s["agentvit"]
    assert ag["agent_device"] == "cpu" and ag["steps"] > 0 and ag["updates"] > 0
    assert 0 < ag["agent_share"] < 1
    ep = s["epoch"]
    assert ep["images"] == 1024 and ep["steps_per_epoch"] == 1024 // 16
    assert positive(ep["data_pipeline"]["median_s"])
    assert {(run["selector"], run["variant"]) for run in ep["runs"]} == {
        ("all", "fp32 eager"), ("random:k=32", "fp32 eager"), ("all", "bf16 eager"), ("random:k=32", "bf16 eager")}
    for run in ep["runs"]:
        assert run["steps"] == ep["steps_per_epoch"]
        assert positive(run["wall_s"]) and positive(run["data_pipeline_share"]) and positive(run["images_per_s"])


def test_the_peer_is_timed_beside_env_step(report):
    """timm's ViT keeps half its tokens at patch_drop_rate 0.5 (read from its first block),
    and each ratio is the median of the per-repeat ratios of the recorded times."""
    import numpy as np

    _, r = report
    p = r["sections"]["peer"]
    assert p["timm_tokens"] == {"timm_64": p["num_patches"], "timm_32": p["num_patches"] // 2}
    times = p["times_s"]
    assert set(times) == {"timm_64", "timm_32", "bare_64", "bare_32", "env_32"}
    assert all(len(t) == p["repeats"] and all(positive(x) for x in t) for t in times.values())
    for name, stats in p["ratios"].items():
        num, den = name.split(" / ")
        assert stats["ratio"] == pytest.approx(float(np.median(np.divide(times[num], times[den]))))


def test_targets_are_booleans_and_markdown_is_written(report):
    out, r = report
    targets = r["targets"]
    # r32, env overhead and the epoch, each for the default and the fastest variant; the
    # data pipeline's share for the fastest (on a CPU both are the eager fp32 step)
    assert [t["variant"].split(" ")[0] for t in targets] == ["default", "fastest"] * 3 + ["fastest"]
    assert targets[0]["variant"] == "default (fp32 eager)"
    for t in targets:
        assert isinstance(t["pass"], bool) and t["measured"] is True and positive(t["value"])
    md = (out / "device_report.md").read_text()
    assert "## Targets" in md and "## Bare training step, batch 16" in md and "fp32 eager" in md
    assert md.count("PASS") + md.count("FAIL") >= 7


def test_bad_arguments_get_one_line_errors():
    with pytest.raises(SystemExit, match="device"):
        device_report.main(["--device", "tpu", "--no-progress"])
    with pytest.raises(SystemExit, match="sections"):
        device_report.main(["--sections", "nope", "--device", "cpu"])

"""python -m benchmarks.compare_selectors end to end (local backend) at the tiny preset on synthetic
data: the files, their fields, resume, interruption, budgets, one-line errors."""
import csv
import functools
import json
import math

import pytest

from benchmarks import compare_selectors
from compare_cli import compare
from benchmarks.sweep.results import RUN_FIELDS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


_compare = functools.partial(compare, selectors="all,random,norm_topk")


def _load(out):
    return json.loads((out / "results.json").read_text())


def _csv_rows(out):
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def _same(csv_value: str, json_value) -> bool:
    if json_value is None:
        return csv_value == ""
    if isinstance(json_value, (int, float)) and not isinstance(json_value, bool):
        return math.isclose(float(csv_value), json_value, rel_tol=1e-12, abs_tol=1e-15)
    return csv_value == str(json_value)


def test_compare_selectors_writes_every_field(tmp_path, capsys):
    assert _compare(tmp_path) == 0
    printed = capsys.readouterr().out
    for name in ("all", "random", "norm_topk"):
        assert f"| {name} |" in printed
    assert str(tmp_path / "results.json") in printed

    result = _load(tmp_path)
    meta = result["meta"]
    assert meta["status"] == "complete"
    for lib in ("torch", "gymnasium", "stable_baselines3"):
        assert meta["versions"][lib]
    assert meta["cpu"] and meta["device"] == "cpu" and meta["date"] and "git_commit" in meta
    assert meta["config"]["env"]["dim"] == 32 and meta["config"]["seeds"] == [0]

    runs = {r["selector"]: r for r in result["runs"]}
    assert list(runs) == ["all", "random", "norm_topk"]
    for r in runs.values():
        assert set(RUN_FIELDS) <= set(r) and "curve" in r
        assert r["dataset"] == "synthetic" and r["seed"] == 0 and r["epochs"] == 1
        assert 0.0 <= r["test_accuracy"] <= 1.0
        assert r["train_time_s"] > 0 and r["images_per_s"] > 0
        assert r["steps"] == 2048 // 16  # one epoch of the synthetic set at batch 16
        assert len(r["curve"]) == 1
        point = r["curve"][0]
        assert point["test_accuracy"] == r["test_accuracy"]
        assert point["train_time_s"] == pytest.approx(r["train_time_s"])
        assert set(point) >= {"epoch", "train_time_s", "test_accuracy", "mean_patches_kept", "mean_reward",
                              "train_loss", "episode_return"}
        # each run's own metrics.json (the runner's format) holds the same curve
        own = json.loads((tmp_path / "runs" / f"{r['selector']}-seed0" / "metrics.json").read_text())
        assert own["epochs"] == r["curve"] and own["meta"]["status"] == "complete"
        # images/s is the steps' images over the training time
        assert r["images_per_s"] == pytest.approx(r["steps"] * r["batch_size"] / r["train_time_s"])
    ref = runs["all"]
    assert ref["speedup_vs_all"] == 1.0
    assert ref["accuracy_delta_vs_all"] == 0.0
    assert ref["test_accuracy_masked"] is None
    assert ref["mean_patches_kept"] == 64
    # the default target is the all run's final accuracy, which it reaches at the latest at its end
    assert ref["target_accuracy"] == ref["test_accuracy"] and ref["speedup_to_target"] == 1.0
    for name in ("random", "norm_topk"):
        r = runs[name]
        assert 0.0 <= r["test_accuracy_masked"] <= 1.0
        assert r["mean_patches_kept"] == 30  # the env's n_patch_desired
        assert r["test_mean_patches_kept_masked"] == 30
        assert r["speedup_vs_all"] == pytest.approx(ref["train_time_s"] / r["train_time_s"])
        assert r["accuracy_delta_vs_all"] == pytest.approx(r["test_accuracy"] - ref["test_accuracy"])

    rows = _csv_rows(tmp_path)
    assert len(rows) == len(result["runs"])
    assert list(rows[0]) == list(RUN_FIELDS)
    for row, run in zip(rows, result["runs"]):
        for key in RUN_FIELDS:
            assert _same(row[key], run[key]), (key, row[key], run[key])

    assert (tmp_path / "accuracy_vs_time.png").read_bytes()[:8] == PNG_MAGIC
    assert (tmp_path / "patch_keep_frequency.png").read_bytes()[:8] == PNG_MAGIC
    # where patches were kept, counted another way: `all` keeps every one, `random` 30 of 64
    # in expectation per position, norm_topk exactly 30 per image
    assert runs["all"]["patch_keep_frequency"] == [1.0] * 64
    assert sum(runs["random"]["patch_keep_frequency"]) == pytest.approx(30)
    assert sum(runs["norm_topk"]["patch_keep_frequency"]) == pytest.approx(30)
    assert not list(tmp_path.glob("runs/*/checkpoints"))  # finished runs keep no checkpoint


def test_finished_results_are_never_deleted_silently(tmp_path):
    assert _compare(tmp_path, selectors="all") == 0
    before = (tmp_path / "results.json").read_text()
    with pytest.raises(SystemExit):
        _compare(tmp_path, selectors="all")
    with pytest.raises(SystemExit):  # --overwrite with a bad selector: the old results stay
        _compare(tmp_path, "--overwrite", selectors="all,nope")
    assert (tmp_path / "results.json").read_text() == before
    assert _compare(tmp_path, "--overwrite", selectors="all") == 0


def test_resume_skips_finished_runs(tmp_path, capsys):
    assert _compare(tmp_path, selectors="all,random") == 0
    first = {r["selector"]: r for r in _load(tmp_path)["runs"]}
    assert _compare(tmp_path, "--resume", selectors="all,random,norm_topk") == 0
    assert "2 finished run(s) kept" in capsys.readouterr().err
    second = {r["selector"]: r for r in _load(tmp_path)["runs"]}
    assert list(second) == ["all", "random", "norm_topk"]
    for name in ("all", "random"):  # not rerun: a rerun would measure another wall time
        assert second[name]["train_time_s"] == first[name]["train_time_s"]
        assert second[name]["curve"] == first[name]["curve"]
    assert len(_csv_rows(tmp_path)) == 3


def test_interrupted_run_resumes_exactly(tmp_path):
    # One uninterrupted reference, and the same sweep stopped in the random run's epoch 2
    # (a simulated Ctrl-C after 128 + 150 steps: `all` finished, `random` cut), then resumed
    # from its checkpoint. `random` draws a mask every step: its generator must resume too.
    ref_dir, cut_dir = tmp_path / "ref", tmp_path / "cut"
    assert _compare(ref_dir, selectors="all,random", epochs=2) == 0
    assert _compare(cut_dir, "--stop-after-steps", str(256 + 150), selectors="all,random", epochs=2) == 130
    partial = _load(cut_dir)
    assert partial["meta"]["status"] == "interrupted"
    assert [r["selector"] for r in partial["runs"]] == ["all"]
    assert partial["meta"]["in_progress"]["selector"] == "random"
    progress = json.loads((cut_dir / "runs" / "random-seed0" / "progress.json").read_text())
    assert progress["state"]["total"]["steps"] == 150 and len(progress["state"]["history"]) == 1

    assert _compare(cut_dir, "--resume", selectors="all,random", epochs=2) == 0
    for ref, resumed in zip(_load(ref_dir)["runs"], _load(cut_dir)["runs"]):
        assert resumed["steps"] == ref["steps"] == 256
        assert resumed["test_accuracy"] == ref["test_accuracy"]  # bit-identical continuation on CPU
        assert resumed["test_accuracy_masked"] == ref["test_accuracy_masked"]
        for key in ("test_accuracy", "train_loss", "mean_reward", "mean_patches_kept", "train_tokens"):
            assert [p[key] for p in resumed["curve"]] == [p[key] for p in ref["curve"]], key
    assert not list(cut_dir.glob("runs/*/checkpoints"))


def test_equal_time_budget(tmp_path):
    # also: a selector given with keyword arguments for agents.make
    assert _compare(tmp_path, "--budget", "equal-time", selectors="all,random:k=32") == 0
    runs = {r["selector"]: r for r in _load(tmp_path)["runs"]}
    budget = runs["all"]["train_time_s"]
    r = runs["random:k=32"]
    assert r["mean_patches_kept"] == 32
    assert r["train_time_s"] >= budget
    assert r["train_time_s"] - budget < 0.25 * budget + 0.1  # stops within about a step of the budget
    assert r["speedup_vs_all"] == pytest.approx(1.0, abs=0.25)
    assert r["curve"][-1]["train_time_s"] == pytest.approx(r["train_time_s"])


def test_resume_refuses_another_configuration(tmp_path, capsys):
    assert _compare(tmp_path, selectors="all") == 0
    with pytest.raises(SystemExit):
        _compare(tmp_path, "--resume", selectors="all", epochs=2)
    assert "another configuration" in capsys.readouterr().err


def test_unknown_selector_lists_the_available_ones(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _compare(tmp_path, selectors="all,nope")
    assert "norm_topk" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # refused before any run: nothing is written
        _compare(tmp_path, selectors="all,random:k=1000")
    assert "outside [1, 64]" in capsys.readouterr().err and not (tmp_path / "results.json").exists()


def test_compare_selectors_reports_agentvit_overhead(tmp_path):
    assert _compare(tmp_path, selectors="all,agentvit") == 0
    r = {r["selector"]: r for r in _load(tmp_path)["runs"]}["agentvit"]
    assert r["agent_overhead_s"] is not None and r["agent_overhead_s"] >= 0
    assert r["agent_overhead_share"] == pytest.approx(r["agent_overhead_s"] / r["train_time_s"])
    assert 0.0 <= r["test_accuracy_masked"] <= 1.0


def test_compare_selectors_has_the_notebooks_three_columns(tmp_path, capsys):
    """All patches, own masks, random masks: in RUN_FIELDS, the CSV and the full table
    (results.md); `all` has no masked columns. The printed table is the compact one."""
    assert "test_accuracy_random_masks" in RUN_FIELDS
    assert _compare(tmp_path, selectors="all,random:k=20") == 0
    compact = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| selector"))
    assert [c.strip() for c in compact.strip("|").split("|")] == [
        "selector", "seeds", "test acc % (all patches)", "Δ test acc vs all (points, paired)", "patches kept",
        "FLOPs vs all", "time vs all", "reached target", "speed-up to target"]
    printed = (tmp_path / "results.md").read_text()
    header = next(line for line in printed.splitlines() if line.startswith("| selector"))
    assert "test acc % (all patches)" in header and "test acc % (own masks)" in header
    assert "test acc % (random masks)" in header
    runs = {r["selector"]: r for r in _load(tmp_path)["runs"]}
    assert runs["all"]["test_accuracy_random_masks"] is None
    got = runs["random:k=20"]["test_accuracy_random_masks"]
    assert 0.0 <= got <= 1.0
    row = next(line for line in printed.splitlines() if line.startswith("| random:k=20 |"))
    column = [c.strip() for c in header.split("|")].index("test acc % (random masks)")
    assert f"{100 * got:.2f}" in row.split("|")[column]
    assert {r["selector"]: r["test_accuracy_random_masks"] for r in _csv_rows(tmp_path)}["random:k=20"] == repr(got)
    # the RL statistics follow: with one seed the IQM is that run's accuracy, its interval a point
    rl = printed.split("## RL statistics", 1)[1]
    acc = 100 * runs["random:k=20"]["test_accuracy"]
    assert f"| random:k=20 | 1 | {acc:.2f} [{acc:.2f}, {acc:.2f}] |" in rl


def test_interleaved_val_protocol_counts_compute_and_matches_sequential(tmp_path):
    """A whole sweep, small: digits, tiny, 2 epochs, seeds 0 and 1, all/random/agentvit,
    interleaved by default, validation curves, tokens and FLOPs; a sequential schedule
    gives every run the same numbers (the order of the runs changes no result)."""
    def sweep(out, *extra):
        return compare_selectors.main(["--dataset", "digits", "--preset", "tiny", "--epochs", "2", "--seeds", "0,1",
                                       "--selectors", "all,random,agentvit", "--device", "cpu", "--out", str(out),
                                       "--no-progress", *extra])

    assert sweep(tmp_path / "i") == 0
    result = _load(tmp_path / "i")
    assert result["meta"]["config"]["schedule"] == "interleaved" and result["meta"]["status"] == "complete"
    runs = {(r["selector"], r["seed"]): r for r in result["runs"]}
    assert len(runs) == 6
    for r in runs.values():
        for key in ("train_tokens", "train_flops", "tokens_to_target", "flops_to_target", "speedup_to_target_flops"):
            assert key in r
        assert all(0 <= p["val_accuracy"] <= 1 for p in r["curve"]) and len(r["curve"]) == 2
        assert r["train_tokens"] == r["curve"][-1]["train_tokens"] and r["train_flops"] > 0
    for seed in (0, 1):
        assert runs[("random", seed)]["train_flops"] < 0.7 * runs[("all", seed)]["train_flops"]
        ref = runs[("all", seed)]
        assert ref["tokens_to_target"] == ref["train_tokens"]  # all reaches its own final at its end
    assert sweep(tmp_path / "s", "--schedule", "sequential") == 0
    seq = {(r["selector"], r["seed"]): r for r in _load(tmp_path / "s")["runs"]}
    for k, r in runs.items():
        for key in ("test_accuracy", "val_accuracy", "test_accuracy_masked", "train_flops", "train_tokens"):
            assert seq[k][key] == r[key], (k, key)
        assert [p["val_accuracy"] for p in seq[k]["curve"]] == [p["val_accuracy"] for p in r["curve"]]
    assert (tmp_path / "i" / "accuracy_vs_flops.png").read_bytes()[:8] == PNG_MAGIC


def test_an_interrupted_interleaved_sweep_resumes_exactly(tmp_path):
    args = ["--schedule", "interleaved", "--protocol", "val"]
    assert _compare(tmp_path / "ref", *args, selectors="all,random", epochs=2) == 0
    # 115 steps an epoch (10% of 2048 images kept for validation): stop inside round 2
    assert _compare(tmp_path / "cut", *args, "--stop-after-steps", "300", selectors="all,random", epochs=2) == 130
    assert _load(tmp_path / "cut")["meta"]["status"] == "interrupted"
    assert _compare(tmp_path / "cut", *args, "--resume", selectors="all,random", epochs=2) == 0
    ref = {r["selector"]: r for r in _load(tmp_path / "ref")["runs"]}
    cut = {r["selector"]: r for r in _load(tmp_path / "cut")["runs"]}
    for name in ("all", "random"):
        assert cut[name]["test_accuracy"] == ref[name]["test_accuracy"]
        assert [p["val_accuracy"] for p in cut[name]["curve"]] == [p["val_accuracy"] for p in ref[name]["curve"]]


@pytest.mark.parametrize("extra,words", [
    (["--seeds", "0,-1"], "--seeds must be an integer in [0, 4294967295]"),
    (["--seeds", str(2**40)], "--seeds must be an integer in [0, 4294967295]"),
    (["--out", "{tmp}/afile/results"], "afile is a file"),
    (["--log-dir", "{tmp}/afile/logs"], "afile is a file"),
    (["--checkpoint-every", "0"], "integer >= 1"),
    (["--patch-size", "32"], "nothing to choose"),
])
def test_compare_selectors_faults_are_one_line_errors(tmp_path, capsys, extra, words):
    (tmp_path / "afile").write_text("x")
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    with pytest.raises(SystemExit) as e:
        _compare(tmp_path / "out", *extra, selectors="all")
    assert e.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert "Traceback" not in err and len(lines) == 1 and err.strip().splitlines()[-1] == lines[0]
    assert lines[0].startswith("python -m benchmarks.compare_selectors: error: ") and words in lines[0]
    assert not (tmp_path / "out" / "results.json").exists() and (tmp_path / "afile").read_text() == "x"


def test_each_selector_is_built_once_to_validate_it(tmp_path, monkeypatch):
    """Start-up builds each selector's agent once (with its env, by check_selector), not a
    second time in make_config."""
    from patchenv import registry

    built = []
    make_from_spec = registry.make_from_spec
    monkeypatch.setattr(registry, "make_from_spec", lambda spec, **kw: built.append(spec) or make_from_spec(spec, **kw))

    class Stop(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(compare_selectors, "sweep", stop)
    with pytest.raises(Stop):
        _compare(tmp_path, selectors="random:k=8,norm_topk,random:k=8")
    assert built == ["all", "random:k=8", "norm_topk"]


@pytest.mark.parametrize("suite", ["fmnist", "fmnist-p2", "fmnist-long"])
def test_suites_parse_into_their_settings(suite):
    """A suite's settings are flags compare_selectors knows: the env gets them (no data is
    loaded here: the suites' Fashion-MNIST is not on every machine)."""
    from benchmarks.suites import SUITES

    parser = compare_selectors.build_parser()
    args = compare_selectors.parse_args(parser, ["--suite", suite])
    cfg = compare_selectors.make_config(args)
    want = SUITES[suite]
    assert cfg["dataset"] == want["dataset"] and cfg["epochs"] == want["epochs"]
    assert cfg["budget"] == "equal-flops"  # the to-target figures at every selector's same compute
    assert cfg["selectors"] == want["selectors"].split(",") and cfg["seeds"] == [0, 1, 2, 3, 4]
    for key in ("batch_size", "patch_size", "image_size", "n_patch_desired"):
        if key in want:
            assert cfg["env"][key] == want[key], key
    for key in ("target_accuracy", "stop_at_target", "horizon_epochs"):
        assert cfg.get(key) == want.get(key), key

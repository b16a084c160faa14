"""compare_selectors --backend ray on a private 2-CPU local Ray, started once for the module:
the same numbers as --backend local, a killed trial retried from its checkpoint, a failed
sweep resumed, equal-time references first. Tiny config (synthetic data, preset tiny)."""
import json

import pytest

from benchmarks import compare_selectors
from benchmarks.sweep import plan, ray_backend
from benchmarks.sweep.results import RUN_FIELDS
from patchenv import checked_json
from patchenv.run import Budget

ray_backend.prepare_environment()  # before Ray is imported: it reads these settings once
ray = pytest.importorskip("ray")
pytest.importorskip("ray.tune")

# What the runs are compared on: every number a run computes that is not a wall-clock time.
SAME = ("test_accuracy", "val_accuracy", "test_loss", "test_accuracy_masked", "test_accuracy_random_masks",
        "mean_patches_kept", "mean_reward", "train_tokens", "train_flops", "steps", "patch_keep_frequency")
CURVE = ("val_accuracy", "val_loss", "train_loss", "train_accuracy", "mean_reward", "train_tokens")


@pytest.fixture(scope="module", autouse=True)
def local_ray(tmp_path_factory):
    # A short folder: Ray's sockets live in it, and a Unix socket path has ~107 characters.
    ray_backend.init(num_cpus=2, temp_dir=str(tmp_path_factory.mktemp("r")))
    yield
    ray.shutdown()


def _sweep(out, *extra, backend="ray", selectors="all,random", seeds="0,1", epochs=1):
    return compare_selectors.main(["--backend", backend, "--dataset", "synthetic", "--preset", "tiny", "--epochs",
                                   str(epochs), "--seeds", seeds, "--selectors", selectors, "--device", "cpu",
                                   "--out", str(out), "--no-progress", *extra])


def _runs(out) -> dict:
    result = json.loads((out / "results.json").read_text())
    return {(r.get("setting"), r["selector"], r["seed"]): r for r in result["runs"]}


def _assert_same_runs(got: dict, want: dict) -> None:
    assert sorted(got, key=str) == sorted(want, key=str)
    for key, r in want.items():
        for field in SAME:
            assert got[key][field] == r[field], (key, field)
        for field in CURVE:
            assert [p[field] for p in got[key]["curve"]] == [p[field] for p in r["curve"]], (key, field)


def test_ray_gives_the_local_numbers(tmp_path, capsys):
    """Ray changes where a run runs, not what it computes: the same per-run numbers as
    --backend local, merged into the same files, the backend recorded."""
    assert _sweep(tmp_path / "local", backend="local") == 0
    assert _sweep(tmp_path / "ray") == 0
    printed = capsys.readouterr().out
    assert "backend ray" in printed and "| random |" in printed
    result = json.loads((tmp_path / "ray" / "results.json").read_text())
    meta = result["meta"]
    assert meta["status"] == "complete" and meta["config"]["backend"] == "ray"
    assert meta["config"]["cpus_per_run"] == 1 and meta["config"]["schedule"] == "parallel"
    assert meta["ray"]["cpus"] == 2 and meta["ray"]["retried"] == []
    assert json.loads((tmp_path / "local" / "results.json").read_text())["meta"]["config"]["backend"] == "local"
    # rows in the plan's order (seed, then selector), whatever order the trials ended in
    assert [(r["selector"], r["seed"]) for r in result["runs"]] == [("all", 0), ("random", 0), ("all", 1),
                                                                      ("random", 1)]
    _assert_same_runs(_runs(tmp_path / "ray"), _runs(tmp_path / "local"))
    rows = (tmp_path / "ray" / "results.csv").read_text().splitlines()
    assert rows[0].split(",") == list(RUN_FIELDS) and len(rows) == 5
    assert (tmp_path / "ray" / "accuracy_vs_time.png").is_file()
    for name in ("all-seed0", "random-seed1"):  # the runner's own files, in the same folders as local's
        own = json.loads((tmp_path / "ray" / "runs" / name / "metrics.json").read_text())
        assert own["meta"]["status"] == "complete" and own["meta"]["torch_threads"] == 1
    assert not list((tmp_path / "ray").glob("runs/*/checkpoints"))
    assert list((tmp_path / "ray" / "ray").glob("*/*/result.json"))  # Tune's records stay inside OUT


def test_a_run_finished_but_not_reported_is_not_run_again(tmp_path):
    """A trial whose run finished just before its worker died or the sweep stopped reports
    the run's metrics.json on its next attempt instead of training again, when the run's
    configuration is the one asked for."""
    assert _sweep(tmp_path, backend="local", selectors="all", seeds="0") == 0
    parser = compare_selectors.build_parser()
    args = compare_selectors.parse_args(parser, ["--dataset", "synthetic", "--preset", "tiny", "--epochs", "1",
                                                 "--device", "cpu", "--out", str(tmp_path)])
    cfg = compare_selectors.make_config(args)
    folder = plan.run_dir(tmp_path, "all", 0)
    config = plan.run_config(cfg, "all", 0, Budget(epochs=1))
    metrics = ray_backend.finished_before(folder, config)
    assert metrics == checked_json.read(folder / "metrics.json")
    assert ray_backend.finished_before(folder, plan.run_config(
        cfg, "all", 0, Budget(epochs=2))) is None  # another budget: run it


# The fault tests' sweep: two epochs of `all` at two grid points (so a grid crosses Ray too).
FAULT = dict(selectors="all", seeds="0", epochs=2)
GRID = ("--grid", "lr=0.001,0.003")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The fault tests' reference: the same sweep, uninterrupted, here."""
    out = tmp_path_factory.mktemp("ref")
    assert _sweep(out, *GRID, backend="local", **FAULT) == 0
    runs = _runs(out)
    assert set(runs) == {("lr=0.001", "all", 0), ("lr=0.003", "all", 0)}
    assert runs[("lr=0.001", "all", 0)]["test_accuracy"] != runs[("lr=0.003", "all", 0)]["test_accuracy"]
    return runs


def test_a_killed_trial_is_retried_from_its_checkpoint(tmp_path, uninterrupted):
    """A worker that dies (os._exit after the run's first epoch checkpoint, as an OOM kill
    would end it) is started again by Tune and continues that checkpoint: the sweep ends
    with the numbers of an uninterrupted run."""
    marker = tmp_path / "died"
    assert _sweep(tmp_path / "out", *GRID, "--die-once-after-checkpoint", str(marker), **FAULT) == 0
    assert marker.is_file()  # a trial really died
    meta = json.loads((tmp_path / "out" / "results.json").read_text())["meta"]
    (retried,) = meta["ray"]["retried"]
    assert retried["failures"] == 1 and retried["setting"] in ("lr=0.001", "lr=0.003")
    assert retried["resumed_from_step"] == 115  # one epoch: 2048 images less 10% for validation, batch 16
    runs = _runs(tmp_path / "out")
    _assert_same_runs(runs, uninterrupted)
    assert runs[("lr=0.003", "all", 0)]["lr"] == 0.003
    assert (tmp_path / "out" / "runs" / "lr=0.003" / "all-seed0" / "metrics.json").is_file()


def test_failed_trials_stop_the_sweep_and_resume_finishes_it(tmp_path, uninterrupted, capsys):
    """With no retries left a trial's failure ends the sweep (exit 1, the finished runs
    saved, the failed one's checkpoint kept); --resume keeps the finished run, continues
    the failed one from its checkpoint, and the numbers are an uninterrupted sweep's."""
    out, marker = tmp_path / "out", tmp_path / "died"
    args = (*GRID, "--max-failures", "0")
    assert _sweep(out, *args, "--die-once-after-checkpoint", str(marker), **FAULT) == 1
    assert "1 run(s) failed" in capsys.readouterr().err
    partial = json.loads((out / "results.json").read_text())
    assert partial["meta"]["status"] == "interrupted" and len(partial["runs"]) == 1
    (kept,) = partial["runs"]
    died = next(s for s in ("lr=0.001", "lr=0.003") if s != kept["setting"])
    assert (out / "runs" / died / "all-seed0" / "progress.json").is_file()

    assert _sweep(out, *args, "--resume", **FAULT) == 0
    assert "1 finished run(s) kept" in capsys.readouterr().err
    runs = _runs(out)
    assert runs[(kept["setting"], "all", 0)]["train_time_s"] == kept["train_time_s"]  # not run again
    _assert_same_runs(runs, uninterrupted)


def test_equal_time_runs_the_references_first(tmp_path):
    """Under equal-time a selector's budget is its reference's training time: the
    references are one phase of trials, the others a second one."""
    assert _sweep(tmp_path, "--budget", "equal-time", seeds="0") == 0
    runs = _runs(tmp_path)
    budget, r = runs[(None, "all", 0)]["train_time_s"], runs[(None, "random", 0)]
    assert r["train_time_s"] >= budget
    assert r["train_time_s"] - budget < 0.25 * budget + 0.1  # stops within about a step of it
    phases = sorted(p.name.split("-")[-1] for p in (tmp_path / "ray").iterdir())
    assert phases == ["references", "runs"]


def test_backend_flags_are_checked_before_anything_runs(tmp_path, capsys):
    for extra, expected in ((("--schedule", "sequential"), "--schedule applies to --backend local"),
                            (("--device", "cuda"), "needs --gpus-per-run above 0"),
                            (("--gpus-per-run", "1"), "with --device cpu"),
                            (("--cpus-per-run", "3", "--ray-num-cpus", "2"), "exceeds the local Ray's 2 CPUs"),
                            (("--ray-address", "auto", "--ray-num-cpus", "2"), "--ray-num-cpus sizes"),
                            (("--max-failures", "-1"), "--max-failures must be 0 or more")):
        with pytest.raises(SystemExit) as e:
            _sweep(tmp_path, *extra)
        assert e.value.code == 2
        assert expected in capsys.readouterr().err, extra
    assert not tmp_path.joinpath("results.json").exists()


def test_ray_trials_as_populations_give_the_local_population_numbers(tmp_path):
    """--backend ray --population: a trial per selector, its seeds as one population; the
    same rows (bit for bit on a CPU) as the local --population schedule."""
    assert _sweep(tmp_path / "local", "--population", backend="local") == 0
    assert _sweep(tmp_path / "ray", "--population") == 0
    result = json.loads((tmp_path / "ray" / "results.json").read_text())
    assert result["meta"]["config"]["schedule"] == "population"
    assert [(r["selector"], r["seed"]) for r in result["runs"]] == [("all", 0), ("random", 0), ("all", 1),
                                                                      ("random", 1)]
    _assert_same_runs(_runs(tmp_path / "ray"), _runs(tmp_path / "local"))
    trials = sorted(p.name for p in (tmp_path / "ray" / "ray").glob("*/*") if p.is_dir())
    assert len(trials) == 2 and all("seeds0_1" in t for t in trials)  # one trial per selector

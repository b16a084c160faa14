"""benchmarks.sweep.plan: run folders, budgets, phases, and the scale-out flags that need no Ray."""
import json
import sys

import pytest
import torch

from benchmarks.sweep import plan
from compare_cli import compare
from patchenv.run import Budget


def test_run_folders_are_safe_names(tmp_path):
    assert plan.run_dir(tmp_path, "random:k=32", 3) == tmp_path / "runs" / "random_k_32-seed3"
    assert plan.run_dir(tmp_path, "all", 0, "alpha=0.3,preset=tiny") == \
        tmp_path / "runs" / "alpha=0.3,preset=tiny" / "all-seed0"
    assert plan.safe_name("a/b c", "._-") == "a_b_c"


def test_equal_time_budget_is_the_references_time_at_the_same_seed_and_point():
    runs = [{"selector": "all", "seed": 0, "setting": None, "train_time_s": 5.0},
            {"selector": "all", "seed": 1, "setting": None, "train_time_s": 7.0},
            {"selector": "all", "seed": 1, "setting": "lr=0.1", "train_time_s": 9.0}]
    equal_time = {"budget": "equal-time", "epochs": 4}
    assert plan.budget_for(equal_time, runs, "random", 1, None) == Budget(epochs=None, seconds=7.0)
    assert plan.budget_for({**equal_time, "setting": "lr=0.1"}, runs, "random", 1, 2) == Budget(epochs=2, seconds=9.0)
    assert plan.budget_for(equal_time, runs, "all", 1, None) == Budget(epochs=4)  # the reference: its epochs
    assert plan.budget_for({"budget": "equal-epochs", "epochs": 4}, runs, "random", 0, None) == Budget(epochs=4)


def test_equal_time_runs_references_in_a_phase_of_their_own():
    todo = [("p", 0, "all"), ("p", 0, "random"), ("p", 1, "all"), ("p", 1, "random")]
    assert plan.phases(todo, {"budget": "equal-time"}) == [[todo[0], todo[2]], [todo[1], todo[3]]]
    assert plan.phases(todo, {"budget": "equal-epochs"}) == [todo]
    assert plan.phases(todo[1::2], {"budget": "equal-time"}) == [todo[1::2]]  # references done: one phase
    assert plan.planned_runs([{"setting": "a"}], {"seeds": [0, 1], "selectors": ["all", "x"]}) == [
        ({"setting": "a"}, 0, "all"), ({"setting": "a"}, 0, "x"), ({"setting": "a"}, 1, "all"),
        ({"setting": "a"}, 1, "x")]


def test_cpus_per_run_sets_the_runs_torch_threads(tmp_path):
    torch.set_num_threads(1)
    assert compare(tmp_path, "--cpus-per-run", "2", selectors="all") == 0
    meta = json.loads((tmp_path / "results.json").read_text())["meta"]
    assert meta["torch_threads"] == 2 and meta["config"]["cpus_per_run"] == 2
    assert json.loads((tmp_path / "runs" / "all-seed0" / "metrics.json").read_text())["meta"]["torch_threads"] == 2
    assert torch.get_num_threads() == 1  # the caller's count is back


@pytest.mark.parametrize("extra, expected", [
    (("--gpus-per-run", "1"), "--gpus-per-run only apply to --backend ray"),
    (("--ray-address", "auto"), "--ray-address only apply to --backend ray"),
    (("--cpus-per-run", "0"), "--cpus-per-run must be positive"),
])
def test_ray_flags_need_the_ray_backend(tmp_path, capsys, extra, expected):
    with pytest.raises(SystemExit) as e:
        compare(tmp_path, *extra)
    assert e.value.code == 2 and expected in capsys.readouterr().err


def test_backend_ray_without_ray_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    monkeypatch.setitem(sys.modules, "ray.tune", None)
    with pytest.raises(SystemExit) as e:
        compare(tmp_path, "--backend", "ray")
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == 'python -m benchmarks.compare_selectors: error: --backend ray needs Ray: pip install -e ".[ray]"'
    assert not tmp_path.joinpath("results.json").exists()

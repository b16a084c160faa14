"""compare_selectors --stop-at-target: every run stops at a target fixed before any run,
under equal FLOPs with a budget computed rather than measured, so all runs start at once."""
import json

import pytest

from benchmarks.sweep import plan
from compare_cli import compare
from patchenv.run import Budget

# Digits: a real data set the tiny ViT does not master in a few epochs (a target of 100% stays
# out of reach; synthetic images reach it)
VAL = ("--protocol", "val", "--dataset", "digits")


def _runs(out):
    return {(r["selector"], r["seed"]): r for r in json.loads((out / "results.json").read_text())["runs"]}


def test_the_computed_budget_is_what_all_spends_and_every_run_starts_at_once(tmp_path):
    """The equal-FLOPs budget of a --stop-at-target sweep is all's FLOPs over --epochs,
    computed; an `all` run with no target (unreachable) spends exactly that."""
    assert compare(tmp_path / "ref", *VAL, selectors="all", epochs=2) == 0
    measured = _runs(tmp_path / "ref")[("all", 0)]["train_flops"]
    out = tmp_path / "stop"
    assert compare(out, *VAL, "--budget", "equal-flops", "--target-accuracy", "1.0", "--stop-at-target",
                   selectors="all,random:k=8", epochs=2) == 0
    config = json.loads((out / "results.json").read_text())["meta"]["config"]
    assert config["reference_flops"] == measured and config["stop_at_target"] is True
    runs = _runs(out)
    assert runs[("all", 0)]["train_flops"] == measured and runs[("all", 0)]["flops_to_target"] is None
    # random:k=8 never reaches 100%: it trains on to all's FLOPs (the step that crosses them included)
    assert measured <= runs[("random:k=8", 0)]["train_flops"] < measured * 1.01
    todo = [("p", 0, "all"), ("p", 0, "x")]
    assert plan.phases(todo, {"budget": "equal-flops", "stop_at_target": True}) == [todo]
    assert plan.phases(todo, {"budget": "equal-flops"}) == [[todo[0]], [todo[1]]]


def test_runs_stop_at_the_target_interleaved_as_one_after_another(tmp_path):
    """A target `all` reaches within the run: each run stops at its first evaluation
    reaching it (its cost to target is its whole cost); interleaved and sequential
    schedules give every run the same numbers."""
    assert compare(tmp_path / "ref", *VAL, selectors="all", epochs=3) == 0
    curve = [p["val_accuracy"] for p in _runs(tmp_path / "ref")[("all", 0)]["curve"]]
    # between the best accuracy before the first evaluation that beats it, and that one
    i = next(i for i in range(1, len(curve)) if curve[i] > max(curve[:i]))
    target = (max(curve[:i]) + curve[i]) / 2
    args = (*VAL, "--budget", "equal-flops", "--target-accuracy", str(target), "--stop-at-target")
    assert compare(tmp_path / "s", *args, selectors="all,random:k=32", epochs=3) == 0
    assert compare(tmp_path / "i", *args, "--schedule", "interleaved", selectors="all,random:k=32", epochs=3) == 0
    seq, inter = _runs(tmp_path / "s"), _runs(tmp_path / "i")
    a = seq[("all", 0)]
    assert a["curve"][-1]["val_accuracy"] >= target and all(p["val_accuracy"] < target for p in a["curve"][:-1])
    assert a["flops_to_target"] == a["train_flops"] and a["time_to_target_s"] == a["train_time_s"]
    for key, r in seq.items():
        for field in ("test_accuracy", "val_accuracy", "train_flops", "flops_to_target", "steps"):
            assert inter[key][field] == r[field], (key, field)


def test_stop_at_target_faults_are_one_line_errors(tmp_path, capsys):
    for extra, words in ((["--stop-at-target"], "--stop-at-target needs --target-accuracy"),
                         (["--stop-at-target", "--target-accuracy", "0.5", "--population"], "not with --population"),
                         (["--horizon-epochs", "0"], "--horizon-epochs must be positive")):
        with pytest.raises(SystemExit) as e:
            compare(tmp_path / "out", *extra, selectors="all")
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert words in err[-1] and "Traceback" not in "".join(err)
    assert not (tmp_path / "out").exists()


def test_resume_needs_the_same_target_when_runs_stop_at_it(tmp_path, capsys):
    args = (*VAL, "--target-accuracy", "0.99", "--stop-at-target")
    assert compare(tmp_path, *args, selectors="all") == 0
    with pytest.raises(SystemExit):
        compare(tmp_path, *VAL, "--target-accuracy", "0.5", "--stop-at-target", "--resume", selectors="all")
    assert "target_accuracy: 0.99 then, 0.5 now" in capsys.readouterr().err


def test_budget_for_gives_every_run_the_target_and_the_computed_flops():
    cfg = {"budget": "equal-flops", "epochs": 4, "stop_at_target": True, "target_accuracy": 0.8,
           "reference_flops": 1000}
    assert plan.budget_for(cfg, [], "all", 0, None) == Budget(epochs=4, accuracy=0.8)
    assert plan.budget_for(cfg, [], "grow", 0, 2) == Budget(epochs=2, flops=1000, accuracy=0.8)
    assert plan.budget_for(cfg, [], "grow", 0, None) == Budget(epochs=plan.EPOCH_CAP * 4, flops=1000, accuracy=0.8)

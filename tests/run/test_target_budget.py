"""An accuracy budget (``Budget(accuracy=...)``): a run stops at its target, checked several
times an epoch near it, outside the clock and without changing what the run trains."""
import gymnasium as gym
import pytest

from tiny_env import TINY
from patchenv.registry import make_from_spec
from patchenv.run import Budget, run_training
from patchenv.run import records as run_records

TIMES = ("train_time_s", "epoch_time_s", "env_step_time_s", "agent_overhead_s")


def run(out, budget, spec="random:k=20"):
    agent = make_from_spec(spec, seed=0)
    env = gym.make("patchenv/PatchSelection-v1", **{**TINY, "val_fraction": 0.1, **agent.env_kwargs()})
    return run_training(env, agent, out, budget=budget, seed=0, show_progress=False)


def untimed(rows):
    return [{k: v for k, v in row.items() if k not in TIMES} for row in rows]


def test_accuracy_budget_is_checked_and_recorded():
    for bad in (dict(epochs=1, accuracy=0), dict(epochs=1, accuracy=1.5), dict(epochs=1, accuracy=True),
                dict(epochs=1, accuracy=0.5, checks_per_epoch=0), dict(epochs=1, accuracy=0.5, checks_per_epoch=2.0)):
        with pytest.raises(ValueError):
            Budget(**bad)
    with pytest.raises(ValueError, match="a budget needs epochs, seconds or flops"):
        Budget(accuracy=0.5)  # a target alone could run forever
    b = Budget(epochs=2, accuracy=0.5)
    assert b.record() == {"epochs": 2, "seconds": None, "accuracy": 0.5, "checks_per_epoch": 4}
    assert not b.reached(None) and not b.reached(0.49) and b.reached(0.5) and b.reached(0.5 - 1e-13)
    assert not b.checking(0.489) and b.checking(0.49) and not Budget(epochs=2).checking(0.9)
    assert not Budget(epochs=2, accuracy=0.5, checks_per_epoch=1).checking(0.5)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """Three epochs without a target: the rows every other run here is compared with."""
    return run(tmp_path_factory.mktemp("plain"), Budget(epochs=3))


def test_checks_change_nothing_the_run_trains(tmp_path, monkeypatch, plain):
    """With every evaluation counted as near an unreachable target, the run is evaluated
    four times an epoch from its first epoch end on, at round(j * spe / 4), and its epoch
    rows are those of the run without a target, field by field but the clock's."""
    monkeypatch.setattr(run_records, "CHECK_WITHIN", 1.0)
    checked = run(tmp_path, Budget(epochs=3, accuracy=1.0))
    assert untimed(checked["epochs"]) == untimed(plain["epochs"])
    assert checked["summary"]["test_accuracy"] == plain["summary"]["test_accuracy"]
    spe = plain["epochs"][0]["global_step"]
    expected = [e * spe + round(j * spe / 4) for e in (1, 2) for j in (1, 2, 3)]
    assert [c["global_step"] for c in checked["checks"]] == expected
    assert all(c["train_time_s"] <= e["train_time_s"] for c, e in zip(checked["checks"][::3], checked["epochs"][1:]))
    assert checked["meta"]["status"] == "complete" and plain["checks"] == []


def test_a_run_stops_at_the_first_evaluation_reaching_its_target(tmp_path, monkeypatch, plain):
    """The target is set between two checks' accuracies of the checked run above: the
    stopped run ends at the check that first reaches it, with that check's numbers."""
    monkeypatch.setattr(run_records, "CHECK_WITHIN", 1.0)
    full = run(tmp_path / "full", Budget(epochs=3, accuracy=1.0))
    evaluations = sorted(full["checks"] + full["epochs"], key=lambda r: r["global_step"])
    accuracies = [r["val_accuracy"] for r in evaluations]
    # the first evaluation after the first epoch that beats every one before it
    i = next(i for i in range(2, len(accuracies)) if accuracies[i] > max(accuracies[:i]))
    target = (accuracies[i] + max(accuracies[:i])) / 2
    stopped = run(tmp_path / "stopped", Budget(epochs=3, accuracy=target))
    last = stopped["epochs"][-1]
    assert last["global_step"] == evaluations[i]["global_step"] and last["val_accuracy"] == accuracies[i]
    assert last["train_flops"] == evaluations[i]["train_flops"]
    assert stopped["meta"]["status"] == "complete" and stopped["summary"]["steps"] == last["global_step"]
    assert all(r["val_accuracy"] < target for r in stopped["epochs"][:-1] + stopped["checks"][:-1])


def test_a_run_far_from_its_target_is_checked_at_epoch_ends_only(tmp_path, plain):
    """A target more than a point above every evaluation: no checks, the plain run's rows."""
    best = max(r["val_accuracy"] for r in plain["epochs"])
    far = run(tmp_path, Budget(epochs=3, accuracy=min(1.0, best + 0.02)))
    assert far["checks"] == [] and untimed(far["epochs"]) == untimed(plain["epochs"])

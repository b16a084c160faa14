"""The learned keep-rate controller: its training recipe, its policy file, how it acts."""
import json
import zipfile

import gymnasium as gym
import numpy as np
import pytest

import agents
from agents.keeprate import KeepRate, WholeRuns, count_for, packaged_policy, train_policy
from agents.keeprate_file import PolicyHeader, read_policy
from patchenv.selector import ZIP_HEADER
from tiny_env import TINY


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    path = tmp_path_factory.mktemp("keeprate") / "policy.zip"
    result = train_policy(path, runs=2, epochs=1, levels=4, decide_every=5, seed=0, dataset="synthetic",
                          show_progress=False)
    assert path.is_file() and result["decisions"] == 2 * int(np.ceil(57 / 5))  # 2048 * 0.9 // 32 = 57 steps a run
    return path


def test_count_levels_cover_one_to_n():
    assert [count_for(i, 8, 64) for i in range(8)] == [8, 16, 24, 32, 40, 48, 56, 64]
    assert [count_for(i, 3, 64) for i in range(3)] == [21, 43, 64]
    assert count_for(0, 128, 64) == 1  # never zero patches


def test_policy_file_round_trip(policy):
    model, levels = read_policy(policy)
    assert levels == 4 and model.action_space.n == 4


def test_keeprate_holds_each_decision_for_decide_every_steps(policy):
    agent = agents.make("keeprate", policy=str(policy), decide_every=5)
    env = gym.make("patchenv/PatchSelection-v1", **{**TINY, "val_fraction": 0.1, "budget_epochs": 1},
                   **agent.env_kwargs())
    assert env.unwrapped.selection == "count" and env.unwrapped.config.probe_every == 5
    kept = []
    agent.train(env, 15, callback=lambda t: kept.append(t.info["kept"]))
    assert len(kept) == 15
    allowed = {count_for(i, 4, 64) for i in range(4)}
    assert set(kept) <= allowed
    for window in (kept[0:5], kept[5:10], kept[10:15]):
        assert len(set(window)) == 1
    # The decision is the policy's greedy action on the observation at the window's start.
    obs = env.unwrapped.run.agent_view(env.unwrapped.run.obs)
    level, _ = read_policy(policy)[0].predict(obs, deterministic=True)
    assert agent.act(obs) == count_for(int(level), 4, 64) - 1  # 15 steps done: a new decision


def test_keeprate_saves_and_loads_through_its_constructor(policy, tmp_path):
    agent = agents.make("keeprate", policy=str(policy), decide_every=5)
    agent.load_state_dict({**agent.state_dict(), "steps": 7, "action": 31})
    agent.save(tmp_path / "k.json")
    same = agents.load(tmp_path / "k.json")
    assert isinstance(same, KeepRate) and same.config() == agent.config()
    assert (same.state_dict()["steps"], same.state_dict()["action"]) == (7, 31)


def test_a_missing_policy_names_the_file_and_the_recipe(tmp_path):
    agent = agents.make("keeprate", policy=str(tmp_path / "none.zip"))
    env = gym.make("patchenv/PatchSelection-v1", **{**TINY, "val_fraction": 0.1}, **agent.env_kwargs())
    with pytest.raises(ValueError, match=r"none\.zip not found.*python -m agents\.keeprate"):
        agent.setup(env)
    (tmp_path / "bad.zip").write_text("not a zip")
    with pytest.raises(ValueError, match=r"cannot read keeprate policy .*bad\.zip"):
        read_policy(tmp_path / "bad.zip")


@pytest.mark.parametrize("key,value,message", [
    ("actions", "jump", "actions 'jump', expected one of levels, steps"),
    ("algorithm", "a2c", "algorithm 'a2c', expected one of "),
    ("levels", None, "levels"),
])
def test_a_header_this_version_cannot_play_is_refused_in_one_line(policy, tmp_path, key, value, message):
    with zipfile.ZipFile(policy) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    header = json.loads(members[ZIP_HEADER])
    if value is None:
        del header[key]
    else:
        header[key] = value
    members[ZIP_HEADER] = json.dumps(header).encode()
    with zipfile.ZipFile(tmp_path / "p.zip", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(ValueError, match=f"cannot read keeprate policy .*p\\.zip: .*{message}") as e:
        PolicyHeader.read(tmp_path / "p.zip")
    assert "\n" not in str(e.value)
    # the file it was made from reads as it says
    good = PolicyHeader.read(policy)
    assert (good.levels, good.actions, good.algorithm) == (4, "levels", "dqn")  # as trained; old files' defaults


@pytest.mark.parametrize("bad,message", [
    (dict(decide_every=0), "decide_every must be a positive integer, got 0"),
    (dict(decide_every=True), "decide_every must be a positive integer, got True"),
    (dict(policy=""), "policy must be a path to a keeprate policy file or None, got ''"),
    (dict(levels=3), r"unknown hyperparameter\(s\) levels; expected some of objective, policy, decide_every, seed$"),
    (dict(selection="batch"), "agent 'keeprate' supports selection 'count' only, got 'batch'"),
    (dict(objective="fast"), r"objective must be one of \('progress', 'target', 'time'\), got 'fast'"),
])
def test_bad_arguments_fail_in_the_constructor(bad, message):
    with pytest.raises(ValueError, match=message):
        KeepRate(**bad)


@pytest.mark.parametrize("objective", ["progress", "target"])
def test_the_packaged_policies_load(objective):
    model, levels = read_policy(packaged_policy(objective))
    assert model.observation_space.shape == (9,) and model.action_space.n == levels
    assert KeepRate(objective=objective).hp.policy_path == packaged_policy(objective)


def test_the_target_objective_pays_compute_and_ends_at_the_target():
    env = gym.make("patchenv/PatchSelection-v1", **{**TINY, "val_fraction": 0.1, "budget_epochs": 1},
                   selection="count", probe_every=5)
    u = env.unwrapped
    wrapped = WholeRuns(env, levels=4, decide_every=5, target=2.0)  # unreachable: runs to the budget's end
    wrapped.reset(seed=0)
    _, r, terminated, truncated, info = wrapped.step(1)  # 32 of 64 patches
    from patchenv.model.flops import step_flops
    # the progress observation reads no embedding: a step embeds its kept patches only
    full, half = (step_flops(u.vit_config, TINY["batch_size"], k, embedded=k)["total"] for k in (64, 32))
    # the first step also carries the probe run at reset; the fifth, its own probe
    probe = step_flops(u.vit_config, min(128, len(u.setup.val[1])), 64)["forward"]
    assert r == pytest.approx(-(5 * half + 2 * probe) / (5 * full))
    assert not terminated and not truncated
    reached = WholeRuns(env, levels=4, decide_every=5, target=0.0)  # any probe reaches it
    reached.reset(seed=0)
    assert reached.step(3)[2] is True


def test_the_runner_trains_and_evaluates_a_count_agent(policy, tmp_path):
    from patchenv.run import Budget, run_training

    agent = agents.make("keeprate", policy=str(policy), decide_every=5)
    env = gym.make("patchenv/PatchSelection-v1", **{**TINY, "val_fraction": 0.1, "budget_epochs": 1},
                   **agent.env_kwargs())
    metrics = run_training(env, agent, tmp_path / "run", budget=Budget(epochs=1), seed=0, show_progress=False,
                           masked_eval=True)
    s = metrics["summary"]
    steps = env.unwrapped.steps_per_epoch
    # Tokens counted another way: the counts the policy chose, window by window.
    assert s["train_tokens"] == pytest.approx(s["mean_patches_kept"] * steps * TINY["batch_size"])
    assert s["patch_keep_frequency"] is None  # a count has no positions of its own
    assert s["test_accuracy_masked"] is not None and s["test_accuracy_random_masks"] is not None

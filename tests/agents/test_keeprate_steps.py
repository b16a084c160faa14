"""keeprate's ``actions="steps"``: an action moves the level the run last kept (down one, stay,
up one or two) instead of naming a level. The task, the trained agent and the reaction
check read the level off the observation's ``last_kept`` and play the same one."""
import json
import re
import zipfile

import numpy as np
import pytest

from agents.evolve import Reference, references
from agents.keeprate import KeepRate, main, train_time_policy
from agents.keeprate_file import PolicyHeader, read_policy
from agents.keeprate_task import Greedy
from agents.keeprate_task import LEVEL_STEPS, PopulationRuns, count_for, played_level
from agents.progress_view import feature_index
from patchenv.env.progress import PROGRESS_FEATURES
from patchenv.selector import ZIP_HEADER

LEVELS, EVERY = 4, 5
UP = LEVEL_STEPS.index(1)
LAST_KEPT = PROGRESS_FEATURES.index("last_kept")


def observation(last_kept: float, budget_done: float = 0.5) -> np.ndarray:
    obs = np.zeros(len(PROGRESS_FEATURES), dtype=np.float32)
    obs[LAST_KEPT], obs[PROGRESS_FEATURES.index("budget_done")] = last_kept, budget_done
    return obs


@pytest.mark.parametrize("levels,n", [(8, 64), (5, 48), (4, 48)])
def test_a_step_moves_the_level_the_run_last_kept(levels, n):
    for level in range(levels):
        # the share a run keeps at this level, as the env reports it
        obs = observation(count_for(level, levels, n) / n)
        for action, move in enumerate(LEVEL_STEPS):
            assert played_level(action, obs, levels, "steps") == min(levels - 1, max(0, level + move))
    # a run that has not stepped (the env says it keeps every patch) starts from the lowest level
    assert [played_level(a, observation(1.0, budget_done=0.0), levels, "steps") for a in range(4)] == [0, 0, 1, 2]
    # under "levels" the action is the level, whatever the run kept
    assert played_level(2, observation(1.0), levels, "levels") == 2


def test_a_run_stepping_up_climbs_one_level_a_decision_across_epochs(pop):
    """Up every decision: levels 1, 2, 3, 3, ... (a fresh run starts at the lowest), the
    observation's share kept follows, across the run's epoch ends, and the next run starts
    low again."""
    [ref] = references(pop, [1000])
    never = Reference(ref.seed, ref.flops, accuracy=1.01, steps=ref.steps)  # the run spends its budget
    runs = PopulationRuns(pop, LEVELS, 1, references=[never], actions="steps")  # a decision a step
    assert runs.action_space.n == len(LEVEL_STEPS)
    n = pop.runs[0].num_patches
    obs = runs.reset()
    played, kept, done, epochs = [], [], False, set()
    while not done:
        obs, _, dones, infos = runs.step(np.array([UP]))
        done = bool(dones[0])
        played.append(infos[0]["level"])
        epochs.add(pop.runs[0].global_step // pop.runs[0].steps_per_epoch)
        if not done:
            kept.append(float(obs[0, LAST_KEPT]))
    expected = [min(LEVELS - 1, j + 1) for j in range(len(played))]
    assert played == expected and len(epochs) > 1
    assert kept == [pytest.approx(count_for(level, LEVELS, n) / n) for level in expected[:-1]]
    _, _, _, infos = runs.step(np.array([UP]))
    assert infos[0]["level"] == 1


def test_steps_need_a_patch_count_for_each_level(pop):
    n = pop.runs[0].num_patches
    with pytest.raises(ValueError, match=rf"actions='steps' needs at most one level per patch \({n}\), got {n + 1}"):
        PopulationRuns(pop, n + 1, EVERY, references=[Reference(1000, 1, 0.5, 10)], actions="steps")


def test_a_steps_policy_trains_reads_back_and_plays_the_same_level_everywhere(tmp_path, pop):
    result = train_time_policy(tmp_path / "s.zip", runs=2, epochs=1, train_images=400, eval_images=200,
                               proxy_seeds=1, levels=LEVELS, decide_every=EVERY, seed=0, algo="dqn",
                               dataset="digits", show_progress=False, actions="steps")
    assert result["recipe"]["actions"] == "steps" and PolicyHeader.read(tmp_path / "s.zip").actions == "steps"
    model, levels = read_policy(tmp_path / "s.zip")
    assert levels == LEVELS and model.action_space.n == len(LEVEL_STEPS)
    # every run's levels move as the steps allow, from the lowest
    for run in result["runs"]:
        path = [0] + run["levels"]
        assert all(b - a in LEVEL_STEPS or b == a == 0 or b == a == LEVELS - 1 for a, b in zip(path, path[1:]))
    every = PolicyHeader.read(tmp_path / "s.zip").steps_decide_every(pop.runs[0].total_steps)
    agent = KeepRate(objective="time", policy=str(tmp_path / "s.zip"), decide_every=every)
    agent.setup(pop.runs[0])
    features = feature_index(PolicyHeader.read(tmp_path / "s.zip").features)
    greedy = Greedy(model, LEVELS, features, "steps")
    n = pop.runs[0].num_patches
    for share, done in ((1.0, 0.0), (count_for(1, LEVELS, n) / n, 0.5), (1.0, 0.9)):
        obs = observation(share, budget_done=done)
        action, _ = model.predict(obs[features], deterministic=True)
        current = 0 if done == 0 else round(share * LEVELS) - 1
        expected = count_for(min(LEVELS - 1, max(0, current + LEVEL_STEPS[int(action)])), LEVELS, n)
        assert agent.decide(obs) == greedy.count(obs, n) == expected


def test_a_steps_policy_moves_a_real_runs_count_one_allowed_step_a_decision(tmp_path):
    """The agent in a plain env (a suite's run): the counts it holds, decision by decision,
    start from the lowest level and move by the steps allowed."""
    import gymnasium as gym
    from tiny_env import TINY

    train_time_policy(tmp_path / "s.zip", runs=1, epochs=1, train_images=400, eval_images=200, proxy_seeds=1,
                      levels=LEVELS, decide_every=EVERY, seed=1, algo="dqn", dataset="digits", show_progress=False,
                      actions="steps")
    plain = dict(**{**TINY, "val_fraction": 0.1, "budget_epochs": 1}, selection="count", obs_type="progress")
    env = gym.make("patchenv/PatchSelection-v1", **plain)
    # it decides as densely over this run's plan as over its proxy's, and is refused otherwise
    every = PolicyHeader.read(tmp_path / "s.zip").steps_decide_every(env.unwrapped.total_steps)
    [ref] = json.loads(zipfile.ZipFile(tmp_path / "s.zip").read(ZIP_HEADER))["recipe"]["references"]
    assert every == round(EVERY * env.unwrapped.total_steps / ref["steps"])
    with pytest.raises(ValueError, match=f"decides every {every} steps, as in training; got decide_every={every + 5}"):
        KeepRate(objective="time", policy=str(tmp_path / "s.zip"), decide_every=every + 5).setup(env)
    env.close()
    agent = KeepRate(objective="time", policy=str(tmp_path / "s.zip"), decide_every=every)
    env = gym.make("patchenv/PatchSelection-v1", **{**TINY, "val_fraction": 0.1, "budget_epochs": 1},
                   **agent.env_kwargs())
    agent.setup(env)
    obs, _ = env.reset(seed=0)
    held = []
    for step in range(6 * every):
        action = agent.act(obs)
        if step % every == 0:
            held.append(action + 1)
        obs, _, terminated, truncated, _ = env.step(action)
        agent.update(None)
        assert not terminated
        if truncated:
            obs, _ = env.reset()
    n = env.unwrapped.num_patches
    levels = [[count_for(j, LEVELS, n) for j in range(LEVELS)].index(k) for k in held]
    path = [0] + levels
    assert all(b - a in LEVEL_STEPS or b == a == 0 or b == a == LEVELS - 1 for a, b in zip(path, path[1:]))
    env.close()


def test_actions_is_a_time_objective_flag(capsys):
    with pytest.raises(SystemExit):
        main(["--objective", "target", "--actions", "steps", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.search("--actions is for --objective time only", err)

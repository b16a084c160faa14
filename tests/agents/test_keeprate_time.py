"""keeprate's time objective: PopulationRuns pays agents.evolve's time score per decision
(a run's rewards sum to minus its modeled time to target, a miss its penalty), SB3's PPO
trains on it, its file reads back without unpickling, and keeprate:objective=time drives a
run through the runner."""
import json
import math
import re
import zipfile

import numpy as np
import pytest

import agents
from agents.evolve import (CHECKS, Reference, env_kwargs, fixed_target_references, proxy_images, references,
                           score_curves)
from agents.evolved_curve import KeepCurve
from agents.keeprate import KeepRate, main, packaged_policy, train_time_policy
from agents.keeprate_file import read_policy
from agents.keeprate_task import PopulationRuns, count_for
from patchenv.population import PopulationEnv
from patchenv.selector import ZIP_HEADER

LEVELS, EVERY, FIXED = 4, 5, 24.0


@pytest.fixture(scope="module")
def ref(pop):
    [r] = references(pop, [1000])
    return r


def play(pop, ref, levels, first_check=0.3, baseline=None):
    """One whole run under PopulationRuns' time objective playing `levels` in turn (the last
    held); its rewards, its last info and the counts of its steps."""
    runs = PopulationRuns(pop, LEVELS, EVERY, references=[ref], first_check=first_check, fixed_cost=FIXED,
                          baselines=None if baseline is None else [baseline])
    runs.reset()
    rewards, decision = [], 0
    while True:
        level = levels[min(decision, len(levels) - 1)]
        _, r, done, infos = runs.step(np.array([level]))
        rewards.append(float(r[0]))
        decision += 1
        if done[0]:
            return rewards, infos[0], decision


def test_rewards_sum_to_minus_the_modeled_time_to_target(pop, ref):
    """A target any run reaches (accuracy 0) stops it at its first check: the first step whose
    modeled time, summed from the counts played, crosses first_check of the reference's."""
    easy = Reference(ref.seed, ref.flops, accuracy=0.0, steps=ref.steps)
    n = pop.runs[0].num_patches
    levels = [0, 3, 1, 2]
    rewards, info, decisions = play(pop, easy, levels, first_check=0.5)
    unit = ref.steps * (FIXED + n)
    cost, step = 0.0, 0
    while cost < math.ceil(0.5 * CHECKS) * unit / CHECKS:
        cost += FIXED + count_for(levels[min(step // EVERY, len(levels) - 1)], LEVELS, n)
        step += 1
    assert info["reached"] is True and info["proxy_seed"] == ref.seed
    assert decisions == math.ceil(step / EVERY)
    assert sum(rewards) == pytest.approx(-cost / unit, rel=1e-5)
    assert info["run_score"] == pytest.approx(cost / unit)


def test_the_return_is_minus_the_score_cma_es_ranks_by(pop, ref):
    """A constant level's return is minus agents.evolve's time score of the same count."""
    n = pop.runs[0].num_patches
    k = count_for(1, LEVELS, n)
    curve = KeepCurve(floor_logit=math.log(k / (n - k)), log_steepness=0.0, switch=1e6, feedback=0.0)
    [score] = score_curves(pop, [curve], ref, decide_every=EVERY, first_check=0.3, objective="time", fixed_cost=FIXED)
    rewards, info, _ = play(pop, ref, [1])
    assert sum(rewards) == pytest.approx(-score, rel=1e-5) and info["run_score"] == pytest.approx(score)


def test_a_baseline_offsets_a_runs_return_by_its_seeds_constant(pop, ref):
    """With a baseline per reference the return is minus the score plus that seed's baseline;
    the score itself, and what the run did, are unchanged."""
    plain, info, decisions = play(pop, ref, [1])
    offset, offset_info, offset_decisions = play(pop, ref, [1], baseline=0.4)
    assert offset_decisions == decisions and offset_info["run_score"] == pytest.approx(info["run_score"])
    assert sum(offset) == pytest.approx(-info["run_score"] + 0.4, rel=1e-5)
    assert offset[:-1] == pytest.approx(plain[:-1]) and offset_info["baseline"] == 0.4 and info["baseline"] == 0.0


def test_each_run_pays_its_own_references_baseline(pop, ref):
    [other] = references(pop, [1001])
    easy = [Reference(r.seed, r.flops, accuracy=0.0, steps=r.steps) for r in (ref, other)]
    runs = PopulationRuns(pop, LEVELS, EVERY, references=easy, baselines=[0.25, 0.75])
    runs.reset()
    ended, total = [], 0.0
    while len(ended) < 3:
        _, r, done, infos = runs.step(np.array([3]))
        total += float(r[0])
        if done[0]:
            ended.append((infos[0]["proxy_seed"], infos[0]["baseline"], total + infos[0]["run_score"]))
            total = 0.0
    assert [(s, b) for s, b, _ in ended] == [(1000, 0.25), (1001, 0.75), (1000, 0.25)]
    assert [rest for _, _, rest in ended] == pytest.approx([0.25, 0.75, 0.25], rel=1e-5)


@pytest.mark.parametrize("baselines", [[0.5, 0.5], [math.nan]])
def test_baselines_must_be_one_finite_score_per_reference(pop, ref, baselines):
    with pytest.raises(ValueError, match=r"baselines must be one finite score per reference run \(1\)") as e:
        PopulationRuns(pop, LEVELS, EVERY, references=[ref], baselines=baselines)
    assert "\n" not in str(e.value)


def test_a_miss_pays_its_time_plus_ten_times_the_accuracy_lacked(pop, ref):
    unreachable = Reference(ref.seed, ref.flops, accuracy=1.01, steps=ref.steps)
    n = pop.runs[0].num_patches
    rewards, info, _ = play(pop, unreachable, [0])
    # The same run again (same seed, same count), counted here: the steps to spend the
    # reference's FLOPs, and its accuracy there (the run played has restarted since).
    pop.reset(seed=[ref.seed], options={"new_run": True})
    spent = steps = 0
    while spent < ref.flops:
        _, _, _, truncated, infos = pop.step_runs([count_for(0, LEVELS, n) - 1])
        spent, steps = spent + infos[0]["flops"], steps + 1
        if truncated[0]:
            pop.reset(options={"reset_mask": truncated})
    accuracy = pop.runs[0].evaluate("test")["accuracy"]
    share = steps * (FIXED + count_for(0, LEVELS, n)) / (ref.steps * (FIXED + n))
    assert info["reached"] is False
    assert sum(rewards) == pytest.approx(-(max(1.0, share) + 10.0 * (1.01 - accuracy)), rel=1e-5)


def test_runs_take_the_references_in_turn(pop, ref):
    [other] = references(pop, [1001])
    easy = [Reference(r.seed, r.flops, accuracy=0.0, steps=r.steps) for r in (ref, other)]
    runs = PopulationRuns(pop, LEVELS, EVERY, references=easy)
    runs.reset()
    seeds = []
    while len(seeds) < 3:
        _, _, done, infos = runs.step(np.array([3]))
        if done[0]:
            seeds.append(infos[0]["proxy_seed"])
    assert seeds == [1000, 1001, 1000]


def test_population_runs_refuse_two_objectives(pop, ref):
    with pytest.raises(ValueError, match="one objective") as e:
        PopulationRuns(pop, LEVELS, EVERY, target=0.5, references=[ref])
    assert "\n" not in str(e.value)


@pytest.fixture(scope="module")
def ppo_policy(tmp_path_factory):
    out = tmp_path_factory.mktemp("time")
    result = train_time_policy(out / "p.zip", runs=3, epochs=1, train_images=400, eval_images=200, proxy_seeds=2,
                               levels=LEVELS, decide_every=EVERY, seed=0, dataset="digits", report=out / "report",
                               show_progress=False)
    return out, result


def test_ppo_trains_and_records_its_learning_curve_and_recipe(ppo_policy):
    out, result = ppo_policy
    curve = json.loads((out / "report" / "learning_curve.json").read_text())
    assert (out / "report" / "learning_curve.png").stat().st_size > 0
    assert [r["run"] for r in curve["runs"]] == [1, 2, 3] and curve == json.loads(json.dumps(result))
    for r in curve["runs"]:
        assert r["return"] == pytest.approx(-r["score"], abs=1e-4) and r["proxy_seed"] in (1000, 1001)
    with zipfile.ZipFile(out / "p.zip") as archive:
        header = json.loads(archive.read(ZIP_HEADER))
    recipe = header["recipe"]
    assert header["algorithm"] == "ppo" and recipe["runs"] == 3 and recipe["proxy_seeds"] == [1000, 1001]
    assert recipe["hyperparameters"]["gamma"] == 1.0 and recipe["fixed_cost"] == 24.0
    assert {"train_images", "eval_images", "epochs", "levels", "decide_every", "train_time_s",
            "torch_threads", "references"} <= set(recipe)


def test_a_ppo_policy_reads_back_without_unpickling(ppo_policy, monkeypatch):
    import cloudpickle
    from stable_baselines3 import PPO

    def refuse(*args, **kwargs):
        raise AssertionError("unpickled")

    monkeypatch.setattr(cloudpickle, "loads", refuse)
    monkeypatch.setattr("pickle.loads", refuse)
    model, levels = read_policy(ppo_policy[0] / "p.zip")
    assert isinstance(model, PPO) and levels == LEVELS and model.action_space.n == LEVELS


def test_dqn_trains_on_the_time_objective_and_reads_back(tmp_path):
    from stable_baselines3 import DQN

    result = train_time_policy(tmp_path / "d.zip", runs=2, epochs=1, train_images=400, eval_images=200,
                               proxy_seeds=1, levels=LEVELS, decide_every=EVERY, seed=0, algo="dqn",
                               dataset="digits", show_progress=False, gradient_steps=3, baseline_count=16,
                               n_steps=25)
    model, levels = read_policy(tmp_path / "d.zip")
    assert isinstance(model, DQN) and levels == LEVELS and result["recipe"]["algorithm"] == "dqn"
    # The baseline is what a constant 16-patch run scores on the proxy seed, computed here apart.
    population = PopulationEnv(1, **env_kwargs(proxy_images("digits", 400, 200), 1, "cpu"))
    [reference] = references(population, [1000])
    constant = KeepCurve(floor_logit=math.log(16 / 48), log_steepness=0.0, switch=1e6, feedback=0.0)
    [expected] = score_curves(population, [constant], reference, decide_every=EVERY, first_check=0.3,
                              objective="time", fixed_cost=24.0)
    population.close()
    assert result["recipe"]["baseline_count"] == 16 and result["recipe"]["baselines"] == [pytest.approx(expected)]
    assert all(r["baseline"] == pytest.approx(expected) for r in result["runs"])
    assert all(r["return"] == pytest.approx(-r["score"] + expected, abs=2e-5) for r in result["runs"])
    # The replay ratio and the n-step returns asked for are the model's and its recipe's.
    assert model.gradient_steps == 3 and result["recipe"]["hyperparameters"]["gradient_steps"] == 3
    assert model.n_steps == 25 and result["recipe"]["hyperparameters"]["n_steps"] == 25
    assert len(result["runs"]) == 2
    # Epsilon has decayed by the runs asked for (0.4 of them), not over learn()'s loose bound.
    assert model.exploration_rate == pytest.approx(0.05)


def test_a_fixed_targets_budget_is_the_all_patch_flops_of_its_epochs(pop, ref):
    """fixed_target_references computes what the reference run measures (the pop's plan is 2
    epochs), but for the one probe a run charges before its first step."""
    from patchenv.model.flops import step_flops

    run = pop.runs[0]
    two, four = (fixed_target_references(pop, [1000, 1001], 0.5, epochs) for epochs in (2, 4))
    full_step = step_flops(run.vit_config, run.batch_size, run.num_patches)["total"]
    assert [r.seed for r in two] == [1000, 1001] and all(r.accuracy == 0.5 for r in two + four)
    assert all(r.steps == run.total_steps == 2 * run.steps_per_epoch for r in two + four)
    assert two[0].flops == full_step * run.steps_per_epoch * 2 and four[1].flops == 2 * two[0].flops
    assert two[0].flops == pytest.approx(ref.flops, rel=0.02) and two[0].flops < ref.flops
    # references() with a target trains nothing and, without a budget, spends the plan (2 epochs)
    assert references(pop, [1000, 1001], target_accuracy=0.5) == two


@pytest.mark.parametrize("target,epochs,message", [
    (0.0, 2, r"--target-accuracy must be a held-out accuracy in \(0, 1\], got 0.0"),
    (87.3, 2, r"--target-accuracy must be a held-out accuracy in \(0, 1\], got 87.3"),
    (0.5, 1, r"--budget-epochs must cover the planned epochs \(2\), got 1"),
])
def test_a_fixed_target_is_checked(pop, target, epochs, message):
    with pytest.raises(ValueError, match=message):
        fixed_target_references(pop, [1000], target, epochs)


def test_a_policy_trains_against_a_fixed_target_and_the_reaction_check_uses_it(tmp_path):
    from agents.keeprate_reaction import react

    result = train_time_policy(tmp_path / "f.zip", runs=2, epochs=1, train_images=400, eval_images=200,
                               proxy_seeds=2, levels=LEVELS, decide_every=EVERY, seed=0, algo="dqn",
                               dataset="digits", show_progress=False, target_accuracy=0.3, budget_epochs=3)
    recipe = result["recipe"]
    population = PopulationEnv(1, **env_kwargs(proxy_images("digits", 400, 200), 1, "cpu"))
    expected = [r.__dict__ for r in fixed_target_references(population, [1000, 1001], 0.3, 3)]
    population.close()
    assert (recipe["target_accuracy"], recipe["budget_epochs"], recipe["references"]) == (0.3, 3, expected)
    assert all(r["return"] == pytest.approx(-r["score"], abs=1e-4) for r in result["runs"])
    # a miss spends the 3-epoch budget: its modeled time is past the 1-epoch plan
    assert all(r["reached"] or r["score"] >= 1.0 for r in result["runs"])
    record = react(tmp_path / "f.zip", [2000], tmp_path / "reaction", show_progress=False)
    assert record["references"] == [{**expected[0], "seed": 2000}]


def test_keeprate_time_drives_a_run_through_the_runner(ppo_policy, tmp_path):
    import gymnasium as gym
    from tiny_env import TINY
    from patchenv.run import Budget, run_training

    agent = agents.make("keeprate", objective="time", policy=str(ppo_policy[0] / "p.zip"), decide_every=EVERY)
    assert agent.env_kwargs()["probe_every"] > 10 ** 9  # it learned without a probe
    env = gym.make("patchenv/PatchSelection-v1", **{**TINY, "val_fraction": 0.1, "budget_epochs": 1},
                   **agent.env_kwargs())
    metrics = run_training(env, agent, tmp_path / "run", budget=Budget(epochs=1), seed=0, show_progress=False)
    s = metrics["summary"]
    steps = env.unwrapped.steps_per_epoch
    assert count_for(0, LEVELS, 64) <= s["mean_patches_kept"] <= 64  # the policy's levels, held
    assert s["train_tokens"] == pytest.approx(s["mean_patches_kept"] * steps * TINY["batch_size"])


def test_the_packaged_time_policy_is_a_ppo_with_its_recipe():
    from stable_baselines3 import PPO

    model, levels = read_policy(packaged_policy("time"))
    assert isinstance(model, PPO) and model.observation_space.shape == (9,) and model.action_space.n == levels
    assert KeepRate(objective="time").hp.policy_path == packaged_policy("time")
    with zipfile.ZipFile(packaged_policy("time")) as archive:
        recipe = json.loads(archive.read(ZIP_HEADER))["recipe"]
    assert recipe["dataset"] == "fashion_mnist" and min(recipe["proxy_seeds"]) >= 1000


def test_the_shipped_dqn_time_policy_reads_back_with_its_recipe():
    from stable_baselines3 import DQN

    from agents.keeprate import POLICIES
    from patchenv.registry import make_from_spec

    path = POLICIES / "keeprate-time-dqn-fmnist.zip"
    model, levels = read_policy(path)
    assert isinstance(model, DQN) and model.observation_space.shape == (9,) and model.action_space.n == levels
    with zipfile.ZipFile(path) as archive:
        recipe = json.loads(archive.read(ZIP_HEADER))["recipe"]
    # evolve's own proxy, a decision per planned epoch, seeds the benchmarks never use
    assert (recipe["algorithm"], recipe["train_images"], recipe["eval_images"], recipe["decide_every"]) == (
        "dqn", 12000, 4000, 178)
    assert min(recipe["proxy_seeds"]) >= 1000 and len(recipe["references"]) == len(recipe["proxy_seeds"])
    agent = make_from_spec(f"keeprate:objective=time:policy={path}")
    assert isinstance(agent, KeepRate) and agent.hp.policy_path == path


@pytest.mark.parametrize("argv,message", [
    (["--objective", "target", "--train-images", "5"], "--train-images is for --objective time only"),
    (["--objective", "progress", "--algo", "ppo"], "--algo is for --objective time only"),
    (["--objective", "time", "--max-minutes", "0"], "--max-minutes must be a positive number, got 0.0"),
    (["--objective", "time", "--proxy-seeds", "0"], "--proxy-seeds must be a positive integer, got 0"),
    (["--objective", "time", "--first-check", "2", "--train-images", "10", "--eval-images", "10"],
     r"--first-check must be in \(0, 1\], got 2.0"),
    (["--objective", "time", "--algo", "a2c"], "invalid choice: 'a2c'"),
    (["--objective", "time", "--algo", "dqn", "--gradient-steps", "0"], "--gradient-steps must be a positive integer"),
    (["--objective", "time", "--algo", "ppo", "--gradient-steps", "4"], "--gradient-steps is .* for --algo dqn only"),
    (["--objective", "target", "--gradient-steps", "4"], "--gradient-steps is for --objective time only"),
    (["--objective", "time", "--algo", "ppo", "--n-steps", "4"], "--n-steps is a positive integer for --algo dqn only"),
    (["--objective", "time", "--algo", "dqn", "--n-steps", "0"], "--n-steps must be a positive integer, got 0"),
    (["--objective", "target", "--n-steps", "4"], "--n-steps is for --objective time only"),
    (["--objective", "target", "--baseline-count", "4"], "--baseline-count is for --objective time only"),
    (["--objective", "time", "--baseline-count", "0"], "--baseline-count must be a positive integer, got 0"),
    (["--objective", "time", "--baseline-count", "65", "--dataset", "digits", "--train-images", "200",
      "--eval-images", "100"], r"--baseline-count must be a patch count in \[1, 64\], got 65"),
    (["--objective", "time", "--budget-epochs", "20"], "--budget-epochs goes with --target-accuracy"),
    (["--objective", "time", "--budget-epochs", "0"], "--budget-epochs must be a positive integer, got 0"),
    (["--objective", "target", "--target-accuracy", "0.8"], "--target-accuracy is for --objective time only"),
    (["--objective", "time", "--target-accuracy", "80", "--dataset", "digits", "--train-images", "200",
      "--eval-images", "100"], r"--target-accuracy must be a held-out accuracy in \(0, 1\], got 80.0"),
])
def test_bad_flags_fail_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv + ["--no-progress"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("python -m agents.keeprate: error:")
    assert re.search(message, err)


@pytest.mark.parametrize("argv,message", [
    (["--seeds", "1000"], "--seeds must be proxy seeds >= 2000"),
    (["--constants", "8,x"], "--constants must be comma-separated patch counts, got '8,x'"),
    (["--constants", "0"], "--constants must be positive patch counts, got '0'"),
    (["--train-images", "0"], "--train-images must be a positive integer, got 0"),
])
def test_the_reaction_check_refuses_bad_flags_in_one_line(argv, message, capsys):
    from agents.keeprate_reaction import main as react_main

    with pytest.raises(SystemExit):
        react_main(argv + ["--out", "x"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("python -m agents.keeprate_reaction: error:") and message in err


def test_the_mean_schedule_is_played_by_budget_done():
    from agents.keeprate_reaction import Schedule, mean_schedule
    from patchenv.env.progress import PROGRESS_FEATURES

    # decision j's mean over the runs that reach it; past the longest run, the last held
    assert mean_schedule([[(0.0, 8), (0.1, 16), (0.2, 64)], [(0.0, 24), (0.1, 16)]]) == [16, 16, 64]
    schedule = Schedule([16, 16, 64], decide_every=20, total_steps=200)
    obs = np.zeros(len(PROGRESS_FEATURES), dtype=np.float32)
    for budget_done, k in ((0.0, 16), (0.1, 16), (0.2, 64), (1.3, 64)):
        obs[PROGRESS_FEATURES.index("budget_done")] = budget_done
        assert schedule.count(obs, 64) == k

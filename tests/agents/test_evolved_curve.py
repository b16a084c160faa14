"""The evolved keep-rate controller: its policy (KeepCurve), its file, how it acts, and the
CMA-ES trainer's proxy data and score (agents/evolve.py)."""
import json
import math

import numpy as np
import pytest
import torch

import agents
from agent_envs import make_env
from agents.evolve import CHECKS, Reference, env_kwargs, evolve, proxy_images, references, score_curves
from agents.evolved_curve import PACKAGED, PARAMETERS, Evolved, KeepCurve, read_policy
from patchenv.data import load_dataset
from patchenv.data.splits import val_split
from patchenv.env.progress import PROGRESS_FEATURES
from patchenv.population import PopulationEnv


def progress_obs(budget_done=0.0, loss=1.0, trend=0.0):
    obs = np.zeros(len(PROGRESS_FEATURES), dtype=np.float32)
    obs[PROGRESS_FEATURES.index("budget_done")] = budget_done
    obs[PROGRESS_FEATURES.index("loss")] = loss
    obs[PROGRESS_FEATURES.index("loss_trend")] = trend
    return obs


def test_keep_curve_is_the_documented_formula():
    curve = KeepCurve(floor_logit=math.log(0.2 / 0.8), log_steepness=math.log(5.0), switch=0.6, feedback=0.5)
    assert curve.floor == pytest.approx(0.2)
    # 0.2 + 0.8 * sigmoid(5 * (0.3 - 0.6) + 0.5 * 10 * (-0.1 / 2.0)), worked out by hand
    z = -1.5 - 0.25
    assert curve.fraction(progress_obs(0.3, loss=2.0, trend=-0.1)) == pytest.approx(0.2 + 0.8 / (1 + math.exp(-z)))
    assert curve.fraction(progress_obs(0.6)) == pytest.approx(0.6)  # at the switch, halfway from the floor
    assert curve.count(progress_obs(0.6), 64) == round(0.6 * 64)
    assert curve.count(progress_obs(50.0), 64) == 64  # far past the budget: every patch
    tiny = KeepCurve(floor_logit=-30.0, log_steepness=0.0, switch=100.0, feedback=0.0)
    assert tiny.count(progress_obs(0.0), 64) == 1  # never zero patches
    assert KeepCurve.from_vector(curve.vector()) == curve


@pytest.mark.parametrize("bad", [[1.0, 2.0, 3.0], [1.0, 2.0, float("nan"), 0.0]])
def test_keep_curve_rejects_a_wrong_vector_in_one_line(bad):
    with pytest.raises(ValueError, match="needs 4 finite numbers") as e:
        KeepCurve.from_vector(bad)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name,objective", [(PACKAGED.name, "flops"), ("evolved-time-fmnist.json", "time")])
def test_the_packaged_policies_read_and_record_their_recipe(name, objective):
    """`evolved:objective=...` picks the packaged policy evolved for that objective, whose
    recipe says so."""
    agent = agents.make("evolved", objective=objective)
    assert agent.hp.policy_path == PACKAGED.with_name(name)
    curve, record = read_policy(agent.hp.policy_path)
    assert set(record["parameters"]) == set(PARAMETERS)
    recipe = record["recipe"]
    assert recipe["dataset"] == "fashion_mnist" and min(recipe["proxy_seeds"]) >= 1000
    assert len(record["history"]) == recipe["generations"]
    assert recipe.get("objective", "flops") == objective  # the first file predates the option
    assert 0 < curve.floor < 1


@pytest.mark.parametrize("content,why", [(None, "not found"), ("{", "JSONDecodeError"),
                                         ('{"format": "other"}', "format 'other'")])
def test_a_bad_policy_file_is_one_line_naming_it(tmp_path, content, why):
    path = tmp_path / "p.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=why) as e:
        read_policy(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_evolved_holds_each_decision_and_keeps_the_curves_count():
    curve = KeepCurve(floor_logit=math.log(0.25 / 0.75), log_steepness=math.log(8.0), switch=0.5, feedback=0.0)
    agent = agents.make("evolved", decide_every=4)
    agent.curve = curve
    env = make_env(agent)
    u = env.unwrapped
    assert u.selection == "count" and u.obs_type == "progress" and u.config.probe_every > 10 ** 9
    seen = []
    agent.train(env, 12, callback=lambda t: seen.append((t.obs, t.info["kept"])))
    for start in (0, 4, 8):  # one decision per window, the curve's count on the window's first observation
        expected = curve.count(seen[start][0], u.num_patches)
        assert [kept for _, kept in seen[start:start + 4]] == [expected] * 4


def test_evolved_refuses_an_unknown_objective_in_one_line():
    with pytest.raises(ValueError, match="objective must be one of") as e:
        agents.make("evolved", objective="seconds")
    assert "\n" not in str(e.value)


def test_evolved_saves_and_loads_through_its_constructor(tmp_path):
    agent = agents.make("evolved", decide_every=7, objective="time")
    agent.load_state_dict({**agent.state_dict(), "steps": 9, "action": 40})
    agent.save(tmp_path / "e.json")
    same = agents.load(tmp_path / "e.json")
    assert isinstance(same, Evolved) and same.config() == agent.config()
    assert (same.state_dict()["steps"], same.state_dict()["action"]) == (9, 40)


# -- the trainer --------------------------------------------------------------------------------
def test_proxy_images_never_hold_the_suites_validation_or_test_images():
    digits = load_dataset("digits")
    proxy = proxy_images("digits", 600, 300)
    _, suite_val = val_split(len(digits.train_y), 0.1)
    suite_val_images = {bytes(x.numpy()) for x in digits.train_x[suite_val]}
    test_images = {bytes(x.numpy()) for x in digits.test_x}
    for split in (proxy.train_x, proxy.test_x):
        assert not {bytes(x.numpy()) for x in split} & (suite_val_images | test_images)
    assert len(proxy.train_y) == 600 and len(proxy.test_y) == 300
    assert not {bytes(x.numpy()) for x in proxy.train_x} & {bytes(x.numpy()) for x in proxy.test_x}
    rest = len(digits.train_y) - len(suite_val)
    with pytest.raises(ValueError, match=f"at most {rest} ") as e:
        proxy_images("digits", rest, 1)
    assert "\n" not in str(e.value)


@pytest.fixture(scope="module")
def digits_population():
    torch.manual_seed(0)
    pop = PopulationEnv(2, **env_kwargs(proxy_images("digits", 400, 200), 2, "cpu"))
    yield pop
    pop.close()


def test_every_patch_scores_exactly_one_against_its_own_reference(digits_population):
    """A candidate that keeps every patch on the reference's seed is the reference run:
    checked only at the budget's end (first_check=1), it has the reference's final accuracy
    there, having spent exactly the reference's FLOPs (score 1). Run 1 of the population
    also matches run 0, where the reference trained."""
    [ref] = references(digits_population, [1000])
    every_patch = KeepCurve(floor_logit=30.0, log_steepness=0.0, switch=0.0, feedback=0.0)
    scores = score_curves(digits_population, [every_patch, every_patch], ref, decide_every=5, first_check=1.0)
    assert scores == [1.0, 1.0]


def test_references_run_side_by_side_as_one_by_one(digits_population):
    """Two seeds' references trained at once (runs 0 and 1) are those trained one at a time."""
    assert references(digits_population, [1002, 1003]) == [references(digits_population, [s])[0]
                                                            for s in (1002, 1003)]


def test_a_missed_target_scores_one_plus_ten_times_the_gap(digits_population):
    [ref] = references(digits_population, [1001])
    unreachable = Reference(ref.seed, ref.flops, accuracy=1.01, steps=ref.steps)
    few = KeepCurve(floor_logit=-30.0, log_steepness=0.0, switch=100.0, feedback=0.0)  # 1 patch throughout
    [score] = score_curves(digits_population, [few], unreachable, decide_every=5, first_check=0.9)
    accuracy = digits_population.runs[0].evaluate("test")["accuracy"]  # where it stopped: the budget's end
    assert score == pytest.approx(1.0 + 10.0 * (1.01 - accuracy))
    assert CHECKS == 20


def test_every_patch_scores_exactly_one_in_time_too(digits_population):
    """Under --objective time a candidate keeping every patch costs what the reference cost:
    the same steps at the same count, whatever the fixed cost."""
    [ref] = references(digits_population, [1000])
    assert ref.steps == digits_population.runs[0].total_steps
    every_patch = KeepCurve(floor_logit=30.0, log_steepness=0.0, switch=0.0, feedback=0.0)
    for fixed_cost in (0.0, 24.0):
        assert score_curves(digits_population, [every_patch], ref, decide_every=5, first_check=1.0,
                            objective="time", fixed_cost=fixed_cost) == [1.0]


def steps_to_spend(pop, seed, k, flops):
    """Env steps a run seeded `seed` keeping k patches takes to spend `flops` (run 0 of `pop`
    alone), counted here without any evaluation."""
    pop.reset(seed=[seed] * pop.num_envs, options={"new_run": True})
    moving = np.arange(pop.num_envs) == 0
    spent = steps = 0
    while spent < flops:
        _, _, _, truncated, infos = pop.step_runs([k - 1] * pop.num_envs, moving)
        spent, steps = spent + infos[0]["flops"], steps + 1
        if truncated[0]:
            pop.reset(options={"reset_mask": truncated & moving})
    return steps


def test_the_time_objective_counts_patch_steps_plus_the_fixed_cost(digits_population):
    """A run keeping k patches throughout misses an unreachable target and stops once it has
    spent the reference's FLOPs; its time score is its steps times (fixed + k) over the
    reference's steps times (fixed + N), plus 10 times the accuracy it lacked."""
    [ref] = references(digits_population, [1001])
    unreachable = Reference(ref.seed, ref.flops, accuracy=1.01, steps=ref.steps)
    n, k, fixed = digits_population.runs[0].num_patches, 4, 10.0
    keep_k = KeepCurve(floor_logit=math.log(k / (n - k)), log_steepness=0.0, switch=1e6, feedback=0.0)
    assert keep_k.count(progress_obs(0.5), n) == k
    [score] = score_curves(digits_population, [keep_k], unreachable, decide_every=5, first_check=0.9,
                           objective="time", fixed_cost=fixed)
    accuracy = digits_population.runs[0].evaluate("test")["accuracy"]  # where it stopped
    steps = steps_to_spend(digits_population, ref.seed, k, ref.flops)
    share = steps * (fixed + k) / (ref.steps * (fixed + n))
    assert share > 1  # at 4 of N patches, spending the FLOPs takes longer than the reference
    assert score == pytest.approx(share + 10.0 * (1.01 - accuracy))


def test_evolve_checks_its_objective_before_training(tmp_path):
    for kwargs, message in (({"objective": "seconds"}, "--objective must be one of flops, time"),
                            ({"fixed_cost": -1.0}, "--fixed-cost must be a finite number >= 0")):
        with pytest.raises(ValueError, match=message):
            evolve(tmp_path / "p.json", generations=1, popsize=2, proxy_seeds=1, epochs=1, train_images=300,
                   eval_images=150, decide_every=5, first_check=0.5, seed=0, dataset="digits",
                   show_progress=False, **kwargs)
    assert not (tmp_path / "p.json").exists()


def test_workers_score_as_one_process_does(tmp_path):
    """Two worker processes give the policy, references and scores of one process."""
    kwargs = dict(generations=1, popsize=2, proxy_seeds=2, epochs=1, train_images=300, eval_images=150,
                  decide_every=5, first_check=0.5, seed=5, dataset="digits", objective="time", fixed_cost=24.0,
                  show_progress=False)
    one = evolve(tmp_path / "one.json", **kwargs)
    two = evolve(tmp_path / "two.json", workers=2, **kwargs)
    assert two["recipe"]["workers"] == 2 and two["recipe"]["objective"] == "time"
    assert two["references"] == one["references"]
    assert [h["scores"] for h in two["history"]] == [h["scores"] for h in one["history"]]
    assert two["parameters"] == one["parameters"]


def test_evolve_writes_a_policy_with_its_recipe_and_history(tmp_path):
    out = tmp_path / "evolved.json"
    record = evolve(out, generations=2, popsize=4, proxy_seeds=1, epochs=1, train_images=300, eval_images=150,
                    decide_every=5, first_check=0.5, seed=3, dataset="digits", population=2, show_progress=False)
    curve, saved = read_policy(out)
    assert saved == json.loads(json.dumps(record))
    assert [h["generation"] for h in saved["history"]] == [0, 1]
    assert saved["recipe"]["proxy_seeds"] == [1003] and saved["references"][0]["seed"] == 1003
    assert all(len(h["scores"]) == 4 and min(h["scores"]) == h["best"] for h in saved["history"])
    assert curve.vector() == [saved["parameters"][p] for p in PARAMETERS]


def test_a_stopped_evolve_leaves_the_policy_so_far(tmp_path, monkeypatch):
    import agents.evolve as evolve_module

    calls = []
    real = evolve_module.score_curves

    def stop_in_the_second_generation(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(evolve_module, "score_curves", stop_in_the_second_generation)
    out = tmp_path / "evolved.json"
    with pytest.raises(KeyboardInterrupt):
        evolve(out, generations=3, popsize=4, proxy_seeds=1, epochs=1, train_images=300, eval_images=150,
               decide_every=5, first_check=0.5, seed=0, dataset="digits", population=4, show_progress=False)
    curve, saved = read_policy(out)
    assert saved["recipe"]["generations_done"] == 1 and len(saved["history"]) == 1
    assert curve.vector() == [saved["history"][0]["mean_parameters"][p] for p in PARAMETERS]

"""agents/base.py: the checks every agent's constructor runs (selection, seed, k, unknown
hyperparameters), the default training loop's clock, save/load through the constructor,
an in-process agent, and topk_mask."""
import json
import time
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest

import agents
from agent_envs import make_env
from agents.base import Agent, build_config, topk_mask

SEED_RANGE = r"seed must be an integer in \[0, 4294967295\] \(numpy's seed range\)"


@pytest.mark.parametrize("name", ["all", "random", "norm_topk"])
def test_make_then_load_of_an_image_agent_comes_back_per_image(name, tmp_path):
    # The constructor re-runs with the saved config: obs_type follows the saved selection.
    saved = agents.make(name, selection="image", seed=4)
    path = tmp_path / "agent.json"
    saved.save(path)
    assert json.loads(path.read_text())["config"] == saved.config()
    for loaded in (agents.make(name).load(path), agents.load(path)):
        assert loaded.selection == "image" and loaded.seed == 4
        assert loaded.obs_type == saved.obs_type
        assert loaded.env_kwargs() == saved.env_kwargs() != agents.make(name).env_kwargs()


def test_load_refuses_another_agents_file(tmp_path):
    agents.make("random", k=3).save(tmp_path / "r.json")
    with pytest.raises(ValueError, match="holds agent 'random', not 'all'") as e:
        agents.make("all").load(tmp_path / "r.json")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="cannot read agent file"):
        (tmp_path / "bad.json").write_text("{not json")
        agents.make("random").load(tmp_path / "bad.json")


@pytest.mark.parametrize("k", [0, -3, 1.5, "x", True])
@pytest.mark.parametrize("name", ["random", "norm_topk", "attention_topk"])
def test_k_is_checked_at_construction(name, k):
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, N\]") as e:
        agents.make(name, k=k)
    assert name in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("name", ["random", "norm_topk", "attention_topk"])
def test_k_above_the_envs_patch_count_is_refused_at_setup(name):
    agent = agents.make(name, k=65)  # N is unknown until an env is
    env = SimpleNamespace(unwrapped=SimpleNamespace(num_patches=64, batch_size=16, n_patch_desired=30,
                                                    **agent.env_kwargs()))
    with pytest.raises(ValueError, match=r"k=65 is outside \[1, 64\]"):
        agent.setup(env)
    agents.make(name, k=64).setup(env)


def test_selection_seed_and_unknown_arguments_are_checked():
    for name in agents.available():
        with pytest.raises(ValueError, match=r"selection must be one of \('batch', 'image', 'count'\)"):
            agents.make(name, selection="pixel")
        for seed in (-1, "a", 1.5, True, 2**32):
            with pytest.raises(ValueError, match=f"^agent '{name}': {SEED_RANGE}, got {seed!r}$"):
                agents.make(name, seed=seed)
        assert agents.make(name, seed=2**32 - 1).seed == 2**32 - 1  # the top of numpy's range
        with pytest.raises(ValueError, match=f"agent '{name}'.*not_an_argument"):
            agents.make(name, not_an_argument=1)
    with pytest.raises(ValueError, match="supports selection 'batch' only"):
        agents.make("agentvit", selection="image")
    with pytest.raises(ValueError, match="n_steps must be a positive integer"):
        agents.make("ppo", n_steps=0)


@pytest.mark.parametrize("name", ["agentvit", "ppo", "keeprate"])
def test_unknown_hyperparameters_are_one_message_listing_the_known_ones(name):
    """The three agents with a hyperparameter dataclass share one check; the names it
    expects are the ones the agent saves (its config, less keeprate's selection)."""
    expected = [k for k in agents.make(name).config() if not (name == "keeprate" and k == "selection")]
    message = f"agent '{name}': unknown hyperparameter(s) bogus, zz_other; expected some of {', '.join(expected)}"
    with pytest.raises(ValueError) as e:
        agents.make(name, zz_other=2, bogus=1)
    assert str(e.value) == message  # sorted, on one line


def test_build_config_builds_the_dataclass_or_names_the_unknown_keywords():
    @dataclass
    class Config:
        a: int = 1
        b: str = "x"

    assert build_config(Config, {"b": "y"}) == Config(1, "y")
    assert build_config(Config, {}) == Config()
    with pytest.raises(ValueError, match=r"^unknown hyperparameter\(s\) c, d; expected some of a, b$"):
        build_config(Config, {"d": 0, "a": 2, "c": 0})


class _SlowAct(Agent):
    def act(self, obs, explore=False):
        time.sleep(0.005)
        return np.ones(obs.shape[0], dtype=np.int8)


def test_default_loop_counts_the_agents_time_only():
    agent = _SlowAct(seed=0)
    env = make_env(agent)
    u = env.unwrapped
    train_before = u.train_time_s
    t0 = time.perf_counter()
    agent.train(env, steps=4, callback=lambda tr: time.sleep(0.02))  # a slow logger: not the agent's time
    wall = time.perf_counter() - t0
    assert agent.overhead_time_s >= 0.02  # the four acts
    # the callbacks (0.08 s) and the env steps are left out
    assert agent.overhead_time_s <= wall - 0.08 - (u.train_time_s - train_before) + 1e-3


def test_third_party_agent_is_found_by_make(restore_registry, tmp_path):
    @agents.register("test_left_half")
    class LeftHalf(Agent):
        def act(self, obs, explore=False):
            mask = np.zeros(obs.shape[0], dtype=np.int8)
            mask[: obs.shape[0] // 2] = 1
            return mask

    assert "test_left_half" in agents.available()
    agent = agents.make("test_left_half", seed=2)
    assert isinstance(agent, LeftHalf) and agent.name == "test_left_half" and agent.obs_type == "pooled"
    env = make_env(agent)
    kept = []
    agent.train(env, steps=3, callback=lambda tr: kept.append(tr.info["kept"]))
    assert kept == [32.0, 32.0, 32.0]
    agent.save(tmp_path / "a.json")
    loaded = agents.load(tmp_path / "a.json")
    assert isinstance(loaded, LeftHalf) and loaded.seed == 2 and loaded.overhead_time_s == agent.overhead_time_s


def test_topk_mask_keeps_the_k_highest_lower_index_on_ties_and_clamps_k():
    scores = np.array([[0.5, 3.0, 1.0, 3.0], [4.0, 0.0, 2.0, 1.0]])
    mask = topk_mask(scores, 2)
    assert mask.dtype == np.int8 and mask.tolist() == [[0, 1, 0, 1], [1, 0, 1, 0]]
    assert topk_mask(scores[0], 1).tolist() == [0, 1, 0, 0]  # a tie: the lower index
    assert topk_mask(scores[0], 0).tolist() == [0, 1, 0, 0]  # at least one patch
    assert topk_mask(scores[0], 9).tolist() == [1, 1, 1, 1]  # at most every patch

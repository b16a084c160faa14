"""Every built-in agent: exactly the ones pyproject.toml declares, each on every selection it
supports, trained on a tiny budget, acting, saved and loaded through its constructor."""
import tomllib
from pathlib import Path

import numpy as np
import pytest

import agents
from agent_envs import make_env, pending_obs
from patchenv.selector import PatchSelector

SELECTIONS = ("batch", "image", "count")
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
#: the selections each built-in agent supports, as the README documents them
SUPPORTED = {
    "agentvit": {"batch"},
    "all": {"batch", "image"},
    "random": {"batch", "image"},
    "norm_topk": {"batch", "image"},
    "attention_topk": {"batch", "image"},
    "ppo": {"batch", "image"},
    "grow": {"batch", "image"},
    "cosine": {"batch", "image"},
    "keeprate": {"count"},
    "evolved": {"count"},
}


def supports(name, selection):
    try:
        agents.make(name, selection=selection)
    except ValueError:
        return False
    return True


CASES = [(n, s) for n in agents.available() for s in SELECTIONS if supports(n, s)]


def test_the_builtin_agents_are_exactly_pyprojects_entry_points():
    """The source of the entry points, read as a file (not through the installed metadata
    that `agents.available()` reads): an agent missing from either side, or one more, fails."""
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["entry-points"]["patchenv.agents"]
    assert set(declared) == set(SUPPORTED)
    assert agents.available() == sorted(declared)
    for name, target in declared.items():
        cls = type(agents.make(name))
        assert f"{cls.__module__}:{cls.__qualname__}" == target and cls.name == name


def test_each_agent_supports_exactly_its_selections():
    assert {n: {s for m, s in CASES if m == n} for n in agents.available()} == SUPPORTED
    for name, selections in SUPPORTED.items():  # what make() accepts is what the class declares
        assert set(type(agents.make(name, selection=min(selections))).obs_types) == selections


@pytest.mark.parametrize("name,selection", CASES)
def test_agent_trains_acts_saves_and_loads(name, selection, tmp_path):
    agent = agents.make(name, selection=selection, seed=1)
    assert isinstance(agent, PatchSelector)
    assert (agent.name, agent.selection, agent.seed) == (name, selection, 1)
    assert agent.obs_type == type(agent).obs_types[selection]
    env = make_env(agent)
    before = env.unwrapped.global_step
    agent.train(env, steps=32)
    assert env.unwrapped.global_step - before == 32  # about `steps`, not a default PPO rollout
    assert agent.overhead_time_s > 0
    assert all(isinstance(v, (int, float)) for v in agent.stats().values())
    obs = pending_obs(env)
    action = agent.act(obs)
    assert env.action_space.contains(action), (name, action)
    assert env.action_space.contains(agent.act(obs, explore=True))

    path = tmp_path / f"agent{agent.save_suffix}"
    agent.save(path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # one file, no temp file left behind
    loaded, via_make = agents.load(path), agents.make(name).load(path)
    for other in (loaded, via_make):
        assert type(other) is type(agent)
        assert other.config() == agent.config() and other.config()["seed"] == 1
        assert (other.selection, other.obs_type, other.env_kwargs()) == (
            agent.selection, agent.obs_type, agent.env_kwargs())
        other.setup(env)
    # Stochastic agents save their generator state: the loaded copies draw what the
    # original would have drawn next, several steps running.
    for _ in range(3):
        expected = agent.act(obs)
        assert np.array_equal(loaded.act(obs), expected) and np.array_equal(via_make.act(obs), expected)
    env.step(loaded.act(obs))  # the loaded agent's action is accepted by the env


def test_unknown_agent_lists_the_choices():
    with pytest.raises(ValueError, match=f"^unknown agent 'no_such_agent'; available: {', '.join(sorted(SUPPORTED))}; "
                                         f"an agent of your own: --plugin "):
        agents.make("no_such_agent")

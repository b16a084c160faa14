"""Training-free schedules (agents/schedules.py): the patch count each step keeps, checked
against the formula by hand, the horizon read from the env, and save/load."""
import math

import gymnasium as gym
import numpy as np
import pytest

import agents
from tiny_env import TINY


class KeptLog(gym.Wrapper):
    def __init__(self, env):
        super().__init__(env)
        self.kept = []

    def step(self, action):
        result = self.env.step(action)
        self.kept.append(result[4]["kept"])
        return result


def run(name, steps, selection="batch", **kwargs):
    agent = agents.make(name, selection=selection, **kwargs)
    env = KeptLog(gym.make("patchenv/PatchSelection-v1", **{**TINY, "budget_epochs": 1, **agent.env_kwargs()}))
    env.reset(seed=0)
    agent.train(env, steps=steps)
    return agent, env


@pytest.mark.parametrize("name,shape", [("grow", lambda p: p), ("cosine", lambda p: (1 - math.cos(math.pi * p)) / 2)])
def test_the_patch_count_follows_the_schedule(name, shape):
    agent, env = run(name, steps=100, k0=16, fraction=0.5)
    total = env.unwrapped.total_steps
    assert total == env.unwrapped.steps_per_epoch == 128  # budget_epochs=1
    # step t (0-based) is acted on after t steps: progress t / (0.5 * 128), capped at 1
    want = [round(16 + 48 * shape(min(1.0, t / 64))) for t in range(100)]
    assert env.kept == want
    assert env.kept[0] == 16 and env.kept[-1] == 64


def test_per_image_schedule_and_an_end_below_every_patch():
    agent, env = run("grow", steps=40, selection="image", k0=8, k_end=32, fraction=1.0)
    want = [round(8 + 24 * t / 128) for t in range(40)]
    assert env.kept == want  # every image of a step keeps the same count
    rows = agent.act(np.zeros((16, 64), dtype=np.float32)).sum(axis=1)
    assert rows.tolist() == [round(8 + 24 * 40 / 128)] * 16  # the next step's count, on every row


def test_a_delayed_ramp_holds_k0_then_grows_past_the_planned_end():
    # the shape evolved learned: k0 until `start` of the budget, linear to every patch at
    # `fraction`, here past the planned run (128 steps): held for 64 steps, ramp over 96
    agent, env = run("grow", steps=200, selection="image", k0=5, start=0.5, fraction=1.25)
    want = [round(5 + 59 * min(1.0, max(0.0, (t - 64) / 96))) for t in range(200)]
    assert env.kept == want
    assert env.kept[64] == 5 and env.kept[65] > 5 and env.kept[160] == 64
    assert agent.config()["start"] == 0.5


def test_schedules_need_the_runs_length_and_check_their_arguments():
    agent = agents.make("grow")
    env = gym.make("patchenv/PatchSelection-v1", **{**TINY, **agent.env_kwargs()})  # no budget_epochs
    with pytest.raises(ValueError, match="budget_epochs"):
        agent.setup(env)
    for bad, message in ((dict(k0=0), r"k must be an integer in \[1, N\].*got 0"),
                         (dict(k0=20, k_end=10), "k_end must be at least k0=20, got 10"),
                         (dict(fraction=0), r"fraction must be a positive number \(1: the planned run's end\), got 0"),
                         (dict(fraction=float("inf")), r"fraction must be a positive number .*, got inf"),
                         (dict(fraction=True), r"fraction must be a positive number .*, got True"),
                         (dict(start=-0.1), r"start must be a number in \[0, fraction=0.75\), got -0.1"),
                         (dict(start=1.2, fraction=1.2), r"start must be a number in \[0, fraction=1.2\), got 1.2"),
                         (dict(k0=None), r"k0 must be an integer in \[1, N\], got None")):
        with pytest.raises(ValueError, match=f"^agent 'grow': {message}"):
            agents.make("grow", **bad)
    with pytest.raises(ValueError, match="outside"):
        agent = agents.make("cosine", k0=100)
        agent.setup(gym.make("patchenv/PatchSelection-v1", **{**TINY, "budget_epochs": 1, **agent.env_kwargs()}))


def test_a_loaded_schedule_continues_the_same_masks(tmp_path):
    agent, env = run("cosine", steps=30, k0=10, fraction=0.8)
    agent.save(tmp_path / "a.json")
    loaded = agents.load(tmp_path / "a.json")
    assert loaded.config() == agent.config() == {"k0": 10, "k_end": None, "fraction": 0.8, "start": 0.0, "selection": "batch",
                                                 "seed": 0}
    loaded.setup(env)
    obs = env.reset()[0]
    assert np.array_equal(loaded.act(obs), agent.act(obs))

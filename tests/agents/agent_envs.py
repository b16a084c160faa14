"""Helpers the agents' tests share (not a test module): a tiny env built for an agent."""
import gymnasium as gym

from tiny_env import TINY


def make_env(agent, **overrides):
    """A tiny env with what `agent` consumes (``agent.env_kwargs()``), reset with seed 0."""
    # budget_epochs: the horizon schedule agents (grow, cosine) read from the env
    kwargs = {**TINY, "budget_epochs": 1, **agent.env_kwargs(), **overrides}
    # The passive checker only warns about torch observations.
    env = gym.make("patchenv/PatchSelection-v1", disable_env_checker=bool(kwargs.get("tensor_obs")), **kwargs)
    env.reset(seed=0)
    return env


def pending_obs(env):
    return env.reset()[0]  # reset() without a seed continues the run: the pending batch


def params(module):
    return [p.detach().clone() for p in module.parameters()]

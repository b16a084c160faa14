"""RL Baselines3 Zoo hyperparameters for the patchenv ids, one module per algorithm:

    python -m rl_zoo3.train --algo ppo --env patchenv/Digits-v1 --gym-packages patchenv \\
        -conf patchenv.integrations.zoo.ppo

Zoo reads ``hyperparams`` (env id -> settings) from the module named by ``-conf``. Without
one it falls back on its defaults, tuned for envs whose step costs microseconds: PPO's
``n_steps=2048`` alone is 2048 ViT training steps before the first update. Here a step is
a ViT training step, so the rollouts are short (the policy learns within a few epochs of
the ViT) and the budgets are a few thousand steps, minutes on a CPU with the tiny preset.

Each module's settings hold ``env_kwargs`` (`ENV_KWARGS`: the tiny preset, keep-rate
control with the progress observation), which the training env and ``rl_zoo3.enjoy``
use. Zoo 2.9 gives its evaluation env (``--eval-freq``) only the command line's
``--env-kwargs``, so a command that evaluates gives them there; ``--env-kwargs``
replaces the file's dict as a whole. ``-params key:value`` changes one setting
(``-params n_timesteps:4096``).
"""
from __future__ import annotations

import copy

# selection="count": Discrete(N) with the 9-number progress observation, which PPO, A2C
# and DQN all take. PPO and A2C also take selection="batch" (MultiBinary(N)) with
# obs_type="pooled" (N, D) given through --env-kwargs.
ENV_KWARGS = {"preset": "tiny", "selection": "count"}

IDS = ("patchenv/PatchSelection-v1", "patchenv/CIFAR10-v1", "patchenv/FashionMNIST-v1", "patchenv/Digits-v1",
       "patchenv/Imagenette-v1")


class Settings(dict):
    """env id -> settings, handing out a copy of an id's settings: Zoo updates and deletes
    keys of the dict it reads, which would change the next run in the same process."""

    def __getitem__(self, env_id: str) -> dict:
        return copy.deepcopy(super().__getitem__(env_id))


def for_every_id(settings: dict) -> Settings:
    """Zoo's ``hyperparams``: `settings` with `ENV_KWARGS` for each patchenv id."""
    return Settings({env_id: {**settings, "env_kwargs": dict(ENV_KWARGS)} for env_id in IDS})

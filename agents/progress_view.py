"""Which of the ``"progress"`` observation's features a keeprate policy reads.

A policy trained on short proxy runs is applied to runs many times longer, on more
data. Some features mean the same on any run (``budget_done``, the share of the planned
steps done; ``kept_so_far`` and ``last_kept``, shares of the patches), others drift with
the run's length and data: after 17 epochs of the whole of Fashion-MNIST the training
loss is lower than anything a 10-epoch proxy run reaches, and ``epoch_done`` turns five
times as often per ``budget_done``. A policy that reads only the first kind meets on the
long run exactly the inputs it learned on. ``observe`` names the features it reads, in
`PROGRESS_FEATURES` order; its policy file's recipe records them, so the selector that
applies it reads the same ones (`read_features`).
"""
from __future__ import annotations

from typing import Optional, Sequence

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnvWrapper

from patchenv.env.progress import PROGRESS_FEATURES

# The features whose values do not depend on the run's length or data set (module docstring).
SCALE_FREE = ("budget_done", "kept_so_far", "last_kept")


def parse_features(names: Optional[Sequence[str]]) -> tuple[str, ...]:
    """`names` (a sequence, or a comma-separated string) checked and put in
    `PROGRESS_FEATURES` order; None: all of them."""
    if names is None:
        return PROGRESS_FEATURES
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in names if n not in PROGRESS_FEATURES]
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(f"observe must name distinct progress features among {', '.join(PROGRESS_FEATURES)}, "
                         f"got {', '.join(names) or 'none'}")
    return tuple(n for n in PROGRESS_FEATURES if n in names)


def feature_index(names: Sequence[str]) -> np.ndarray:
    """The positions of `names` in the progress observation."""
    return np.array([PROGRESS_FEATURES.index(n) for n in parse_features(names)])


def features_space(names: Sequence[str]) -> gym.spaces.Box:
    """The observation space of a policy reading `names`."""
    return gym.spaces.Box(low=-np.inf, high=np.inf, shape=(len(parse_features(names)),), dtype=np.float32)


def read_features(header: dict) -> tuple[str, ...]:
    """The features a policy file's header says its policy reads (every one where its
    recipe does not say: the files written before a policy could read fewer)."""
    return parse_features((header.get("recipe") or {}).get("observe"))


class ObserveFeatures(VecEnvWrapper):
    """An SB3 VecEnv of progress observations seen through `names` alone (terminal
    observations included, which SB3's off-policy algorithms store)."""

    def __init__(self, venv, names: Sequence[str]):
        self.names = parse_features(names)
        self.index = feature_index(self.names)
        super().__init__(venv, observation_space=features_space(self.names))

    def reset(self):
        return self.venv.reset()[:, self.index]

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        for info in infos:
            if "terminal_observation" in info:
                info["terminal_observation"] = info["terminal_observation"][self.index]
        return obs[:, self.index], rewards, dones, infos

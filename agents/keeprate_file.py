"""A keeprate policy file: an SB3 model's zip with patchenv's JSON header added.

The header says everything needed to use the model without unpickling anything: how many
count levels it picks from, what its actions mean (a level, or a move of the run's level),
which SB3 algorithm wrote it, which progress features it reads and the recipe it was trained
with. `PolicyHeader.read` reads it once; `PolicyHeader.load_model` then rebuilds the model
from it (`agents.sb3_files.load_model`: the spaces come from the header, not from pickles).
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import gymnasium as gym

from agents.keeprate_task import ACTIONS, TRAIN_FREQ, Greedy, action_count
from agents.keeprate_time import ALGORITHMS
from agents.progress_view import feature_index, features_space, read_features
from agents.sb3_files import load_model
from patchenv.atomic import atomic_write_bytes
from patchenv.selector import ZIP_HEADER

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class PolicyHeader:
    """What a keeprate policy file's header says (module docstring)."""

    path: Path
    levels: int
    actions: str  # agents.keeprate_task.ACTIONS; "levels" in files written before "steps"
    algorithm: str  # ALGORITHMS; "dqn" in the first files, which do not say
    features: tuple[str, ...]  # the progress features the policy reads (agents.progress_view)
    recipe: dict = field(repr=False)  # how it was trained ({} in files that do not say)

    @classmethod
    def read(cls, path: PathLike) -> "PolicyHeader":
        """The header of the policy file `path`; a one-line ValueError naming the file if it is
        missing, not a policy file or says something this version cannot play."""
        path = Path(path)
        try:
            with zipfile.ZipFile(path) as archive:
                header = json.loads(archive.read(ZIP_HEADER))
            actions = header.get("actions", "levels")
            if actions not in ACTIONS:
                raise ValueError(f"actions {actions!r}, expected one of {', '.join(ACTIONS)}")
            algorithm = header.get("algorithm", "dqn")
            if algorithm not in ALGORITHMS:
                raise ValueError(f"algorithm {algorithm!r}, expected one of {', '.join(ALGORITHMS)}")
            return cls(path, int(header["levels"]), actions, algorithm, read_features(header),
                       header.get("recipe") or {})
        except FileNotFoundError:
            raise ValueError(f"keeprate policy {path} not found; train one with "
                             f"`python -m agents.keeprate --out {path}`") from None
        except Exception as e:
            raise ValueError(f"cannot read keeprate policy {path}: {type(e).__name__}: {e}") from None

    @property
    def n_actions(self) -> int:
        return action_count(self.levels, self.actions)

    def load_model(self):
        """The SB3 model (DQN or PPO, as the header says) rebuilt from the file with nothing
        unpickled; a one-line ValueError naming the file otherwise."""
        from stable_baselines3 import DQN, PPO

        try:
            # The policy's spaces are the count task's (the progress features it reads, a level
            # or a move), and its train_freq or clip_range is its trainer's.
            algo, known = (DQN, {"train_freq": TRAIN_FREQ}) if self.algorithm == "dqn" else \
                (PPO, {"clip_range": float(self.recipe["hyperparameters"]["clip_range"])})
            model = load_model(algo, self.path, observation_space=features_space(self.features),
                               action_space=gym.spaces.Discrete(self.n_actions), known=known)
        except Exception as e:
            raise ValueError(f"cannot read keeprate policy {self.path}: {type(e).__name__}: {e}") from None
        if model.action_space.n != self.n_actions:
            raise ValueError(f"keeprate policy {self.path}: {model.action_space.n} actions but its header's levels "
                             f"and actions make {self.n_actions}")
        return model

    def greedy(self) -> Greedy:
        """The policy acting greedily on full progress observations (its model from
        `load_model`, its levels, actions and features from this header)."""
        return Greedy(self.load_model(), self.levels, feature_index(self.features), self.actions)

    def steps_decide_every(self, total_steps: Optional[int]) -> int:
        """The decision interval at which this ``actions="steps"`` policy decides as often, per
        planned step, as in training (its recipe's decide_every over its proxy plan's steps),
        on a run of `total_steps` planned steps: a step moves one level a decision, so a
        sparser run would climb slower."""
        if total_steps is None:
            raise ValueError(f"{self.path} moves its count a step a decision: the run needs budget_epochs (a plan)")
        return max(1, round(self.recipe["decide_every"] * total_steps / self.recipe["references"][0]["steps"]))


def read_policy(path: PathLike):
    """(SB3 model, levels) from a keeprate policy file; a one-line ValueError naming the file
    otherwise."""
    header = PolicyHeader.read(path)
    return header.load_model(), header.levels


def save_policy(model, out: Path, header: dict) -> None:
    """The SB3 model's zip with the patchenv `header` added, written to `out` atomically."""
    buf = io.BytesIO()
    model.save(buf)
    with zipfile.ZipFile(buf, "a") as archive:
        archive.writestr(ZIP_HEADER, json.dumps(header, indent=2))
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, buf.getvalue())

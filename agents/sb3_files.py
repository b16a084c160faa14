"""Stable-Baselines3 ``.zip`` files read without running code from them.

SB3 saves the parts of a model that JSON cannot hold (the policy class, the spaces, the
schedules, buffers' classes, ``policy_kwargs`` naming a class) as cloudpickled entries of
its ``data`` member, and ``load`` unpickles them: a crafted policy file runs its author's
code. SB3's ``custom_objects`` replaces an entry before it is unpickled, so we hand it
every pickled entry rebuilt from what we know (the algorithm's policy, the spaces the
patchenv header stores, the agent's own settings), and refuse a file with any other one.
The weights (``*.pth``) SB3 already reads with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import Any, Optional

import gymnasium as gym
import numpy as np

# What SB3 rebuilds by itself when the entry is None: the buffers of the last rollout, the
# episode statistics, the schedules (from the plain learning rate and exploration numbers
# the file holds beside them) and the default buffer classes.
_REBUILT_BY_SB3 = ("_last_obs", "_last_episode_starts", "_last_original_obs", "ep_info_buffer",
                   "ep_success_buffer", "lr_schedule", "exploration_schedule", "replay_buffer_class",
                   "rollout_buffer_class")


def space_to_json(space: gym.Space) -> dict:
    """A plain description of `space` (Box, Discrete, MultiBinary, MultiDiscrete), for a
    file's JSON header; `space_from_json` builds it again."""
    if isinstance(space, gym.spaces.Box):
        return {"type": "Box", "shape": list(space.shape), "dtype": space.dtype.name,
                "low": _bounds_to_json(space.low), "high": _bounds_to_json(space.high)}
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.MultiBinary):
        return {"type": "MultiBinary", "n": np.asarray(space.n).tolist()}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist()}
    raise TypeError(f"cannot describe a {type(space).__name__} space in JSON")


def space_from_json(desc: Any) -> gym.Space:
    """The space `space_to_json` described; a ValueError for anything else."""
    if not isinstance(desc, dict):
        raise ValueError(f"a space description should be a JSON object, got {type(desc).__name__}")
    kind = desc.get("type")
    if kind == "Box":
        shape, dtype = tuple(int(n) for n in desc["shape"]), np.dtype(str(desc["dtype"]))
        return gym.spaces.Box(_bounds_from_json(desc["low"], shape, dtype), _bounds_from_json(desc["high"], shape, dtype),
                              shape=shape, dtype=dtype)
    if kind == "Discrete":
        return gym.spaces.Discrete(int(desc["n"]), start=int(desc.get("start", 0)))
    if kind == "MultiBinary":
        n = desc["n"]
        return gym.spaces.MultiBinary([int(k) for k in n] if isinstance(n, list) else int(n))
    if kind == "MultiDiscrete":
        return gym.spaces.MultiDiscrete(np.asarray(desc["nvec"], dtype=np.int64))
    raise ValueError(f"unknown space type {kind!r} (Box, Discrete, MultiBinary or MultiDiscrete)")


def _bounds_to_json(bounds: np.ndarray):
    """One number where every element is the same (the usual case), else nested lists;
    infinities as the strings "inf" and "-inf" (JSON has none)."""
    flat = np.unique(bounds)
    values = flat[0] if flat.size == 1 else bounds
    encode = np.vectorize(lambda x: str(x) if math.isinf(x) else x, otypes=[object])
    return encode(np.asarray(values, dtype=np.float64)).tolist()


def _bounds_from_json(value, shape: tuple, dtype: np.dtype) -> np.ndarray:
    decode = np.vectorize(lambda x: float(x) if isinstance(x, str) and x in ("inf", "-inf") else x, otypes=[np.float64])
    array = decode(np.asarray(value, dtype=object))
    return np.broadcast_to(array, shape).astype(dtype)


def load_model(algo, path: Path, *, observation_space: gym.Space, action_space: gym.Space, device="cpu",
               known: Optional[dict] = None):
    """``algo.load(path)`` (an SB3 algorithm class) with no cloudpickled entry unpickled:
    the policy is ``algo``'s MlpPolicy, the spaces are the ones given, `known` gives the
    others an agent sets itself (``policy_kwargs``, ``clip_range``, ``train_freq``), and
    what SB3 rebuilds is left to it. A file with another pickled entry is refused with a
    one-line ValueError naming it and the entry."""
    with zipfile.ZipFile(path) as archive:
        data = json.loads(archive.read("data"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: SB3's 'data' member is not a JSON object")
    replacements = {"policy_class": algo.policy_aliases["MlpPolicy"], "observation_space": observation_space,
                    "action_space": action_space, **dict.fromkeys(_REBUILT_BY_SB3), **(known or {})}
    pickled = [key for key, value in data.items() if isinstance(value, dict) and ":serialized:" in value]
    unknown = [key for key in pickled if key not in replacements]
    if unknown:
        raise ValueError(f"{path} holds pickled {', '.join(repr(k) for k in unknown)} that loading would run as "
                         f"code; a patchenv policy file holds none")
    return algo.load(path, device=device, custom_objects={key: replacements[key] for key in pickled})

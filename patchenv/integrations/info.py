"""The info's numbers with a dtype, for readers that ask a value for its ``.dtype``.

The env's info holds Python numbers (float, int, bool), as Gymnasium's own envs do and as
its sync vector env batches best (it turns a numpy bool into an object array). TorchRL's
``default_info_dict_reader`` reads ``value.dtype``, so `TypedInfo` hands it numpy scalars:
np.float64, np.int64 and np.bool_, the dtypes the env computes them in
(`patchenv.env.outcome`). ``float(x)``, ``int(x)``, ``bool(x)`` and ``==`` work on them as
on the Python numbers.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

# Each info key's dtype (`patchenv.env.outcome.infos`; ``steps`` with action_repeat > 1);
# kept_per_image is (B,), the others are scalars.
INFO_DTYPES: dict[str, type] = {
    "loss": np.float64, "accuracy": np.float64, "kept": np.float64, "tokens": np.int64, "padding_tokens": np.int64,
    "epoch": np.int64, "global_step": np.int64, "loss_term": np.float64, "patch_term": np.float64,
    "diverged": np.bool_, "flops": np.int64, "probe_flops": np.int64, "kept_per_image": np.int64, "steps": np.int64,
}


def typed(info: dict) -> dict:
    """`info` with each value as a numpy scalar or array of its `INFO_DTYPES` dtype (keys
    it does not list: numpy's own choice)."""
    return {key: np.asarray(value, dtype=INFO_DTYPES.get(key))[()] if not isinstance(value, dict) else value
            for key, value in info.items()}


class TypedInfo(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """`reset` and `step` return the info through `typed`; nothing else changes."""

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)  # Gymnasium's check_env rebuilds the wrapped env
        gym.Wrapper.__init__(self, env)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return obs, typed(info)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, typed(info)

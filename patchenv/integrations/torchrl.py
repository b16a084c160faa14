"""patchenv in TorchRL: ``make_env(id, device=..., **env_kwargs)``.

TorchRL's ``GymEnv("patchenv/Digits-v1", device="cpu")`` keeps ``device`` for its own
tensors and builds the env without it, so patchenv's ViT trains where ``device="auto"``
puts it (CUDA when there is one). `make_env` gives ``device`` to patchenv and puts
TorchRL's tensors on the same device unless ``torchrl_device`` says otherwise. It also:

- converts every selection mode's action space: ``"count"`` (``Discrete(N)``, one-hot or
  ``categorical_action_encoding=True``), ``"batch"`` (``MultiBinary(N)``) and ``"image"``
  (``MultiBinary((B, N))``, which TorchRL's converter reads as a 1-D space and refuses:
  here a ``Binary`` spec of shape (B, N));
- gives the info's numbers a dtype (`patchenv.integrations.info.TypedInfo`) and, with
  ``info_keys``, registers TorchRL's ``default_info_dict_reader`` for them with their
  specs (`info_spec`), so the rollout carries them (0 where a step's info lacks a key:
  the reset's info has only ``epoch`` and ``global_step``).

A random Binary action can keep no patch of an image, which the env refuses; with N = 64
that is a 2**-64 chance per row.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Optional, Union

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from patchenv.integrations.info import INFO_DTYPES, TypedInfo
from patchenv.wrappers import FlattenMultiBinaryAction

if TYPE_CHECKING:
    from torchrl.data import Composite
    from torchrl.envs import GymWrapper

__all__ = ["make_env", "info_spec"]


def _torchrl():
    """torchrl, imported when used: ``import patchenv.integrations.torchrl`` works without it."""
    try:
        import torchrl.data
        import torchrl.envs
    except ImportError as e:
        raise ImportError(f"patchenv.integrations.torchrl needs torchrl ({e}): "
                          f"pip install -e \".[integrations]\" or pip install torchrl") from None
    return torchrl


def info_spec(env: gym.Env, keys: Iterable[str], device: Union[str, torch.device, None] = None) -> "Composite":
    """TorchRL specs of the info `keys` of `env` (a patchenv env, wrapped or not): scalars,
    ``kept_per_image`` (B,), each of its `INFO_DTYPES` dtype."""
    specs = _torchrl().data
    keys = list(keys)
    unknown = [k for k in keys if k not in INFO_DTYPES]
    if unknown:
        raise ValueError(f"unknown info key {unknown[0]!r}; the info holds {sorted(INFO_DTYPES)}")
    batch = env.unwrapped.batch_size
    return specs.Composite({key: specs.Unbounded((batch,) if key == "kept_per_image" else (), device=device,
                                     dtype=torch.from_numpy(np.zeros(0, INFO_DTYPES[key])).dtype)
                      for key in keys}, shape=())


def make_env(env_id: str = "patchenv/Digits-v1", *, device: str = "auto",
             torchrl_device: Union[str, torch.device, None] = None, info_keys: Optional[Iterable[str]] = None,
             categorical_action_encoding: bool = False, **env_kwargs) -> "GymWrapper":
    """A TorchRL env of the patchenv id `env_id` built with ``device`` (patchenv's: where
    the ViT trains) and `env_kwargs` (``preset``, ``selection``, ... as for
    ``gymnasium.make``). ``torchrl_device``: where TorchRL puts the tensordicts (default:
    the env's resolved device). ``info_keys``: info entries the rollout carries."""
    if not env_id.startswith("patchenv/"):
        raise ValueError(f"make_env builds patchenv ids (patchenv/...), got {env_id!r}; "
                         f"use torchrl's GymEnv for others")
    if env_kwargs.get("tensor_obs"):
        raise ValueError("make_env needs numpy observations (TorchRL converts them): leave tensor_obs off")
    torchrl = _torchrl()

    env = TypedInfo(gym.make(env_id, device=device, **env_kwargs))
    space = env.action_space
    per_image = isinstance(space, spaces.MultiBinary) and len(space.shape) > 1
    if per_image:  # TorchRL converts the flat space; the spec is put back to (B, N) below
        env = FlattenMultiBinaryAction(env)
    tensor_device = env.unwrapped.device if torchrl_device is None else torchrl_device
    wrapped = torchrl.envs.GymWrapper(env, device=tensor_device,
                                      categorical_action_encoding=categorical_action_encoding)
    if per_image:
        # The flatten wrapper reshapes a (B, N) action as well as a flat one.
        wrapped.action_spec = torchrl.data.Binary(n=space.shape[-1], shape=space.shape, device=tensor_device,
                                                  dtype=wrapped.action_spec.dtype)
    if info_keys is not None:
        keys = list(info_keys)
        reader = torchrl.envs.default_info_dict_reader(keys, spec=info_spec(env, keys, tensor_device))
        wrapped.set_info_dict_reader(reader)
    return wrapped

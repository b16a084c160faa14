"""The observation space of ``tensor_obs=True``: a Box whose members are torch tensors.

A ``PatchSelectionEnv(tensor_obs=True)`` hands its observations to an in-process agent as
float32 tensors on the env's device, with no host copy. Gymnasium's tools assume numpy;
this module makes each of them either work with the tensors or refuse in one line:

- ``TensorBox.contains`` accepts a tensor (on any device) without casting it to numpy
  (Gymnasium's ``Box.contains`` warns and fails for a CUDA tensor); numpy arrays are
  checked as ``Box`` checks them. ``sample()`` returns a tensor on the space's device.
- Vector envs: ``gymnasium.make_vec(..., vectorization_mode="sync")`` (or
  ``SyncVectorEnv``) stacks the sub-envs' tensors on the device into one
  (num_envs, ...) tensor: the batch functions of ``gymnasium.vector.utils`` are
  registered for ``TensorBox`` below. ``AsyncVectorEnv`` passes observations between
  processes through numpy shared memory: refused with a ValueError naming the fix.
- ``gymnasium.utils.env_checker.check_env`` compares observations as numpy arrays or
  with ``==`` (ambiguous for a tensor): `refuse_gymnasium_check_env` lets the env refuse
  it with a TypeError that says to check the env built with ``tensor_obs=False`` (same
  spaces, dynamics and numbers). SB3's ``check_env`` already says it needs numpy.
"""
from __future__ import annotations

import sys
from copy import deepcopy
from typing import Any, Iterable, Optional, Union

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array, iterate
from gymnasium.vector.utils.shared_memory import create_shared_memory

from patchenv.env.progress import PROGRESS_FEATURES

NUMPY_ONLY = "build the env with tensor_obs=False (the same spaces, dynamics and numbers, with numpy observations)"


class TensorBox(spaces.Box):
    """``Box(low, high, shape, dtype)`` whose members are torch tensors on `device`."""

    def __init__(self, low, high, shape=None, dtype=np.float32, device: Union[str, torch.device] = "cpu", seed=None):
        super().__init__(low, high, shape=shape, dtype=dtype, seed=seed)
        self.device = torch.device(device)
        self.torch_dtype = torch.from_numpy(np.empty(0, dtype=self.dtype)).dtype

    def contains(self, x: Any) -> bool:
        if not isinstance(x, torch.Tensor):
            return super().contains(x)
        if x.layout != torch.strided or x.is_meta or x.is_quantized or x.is_nested:
            return False
        if tuple(x.shape) != self.shape or x.dtype != self.torch_dtype:
            return False
        low = torch.as_tensor(self.low, device=x.device)
        high = torch.as_tensor(self.high, device=x.device)
        return bool(((x >= low) & (x <= high)).all())  # note: sync point (NaN fails both comparisons)

    def sample(self, mask=None, probability=None) -> torch.Tensor:
        return torch.from_numpy(super().sample(mask, probability)).to(self.device)

    def to_jsonable(self, sample_n) -> list:
        return [x.detach().cpu().numpy().tolist() if isinstance(x, torch.Tensor) else np.asarray(x).tolist()
                for x in sample_n]

    def __eq__(self, other) -> bool:
        return isinstance(other, TensorBox) and other.device == self.device and super().__eq__(other)

    def __repr__(self) -> str:
        return f"TensorBox({self.low_repr}, {self.high_repr}, {self.shape}, {self.dtype}, device={self.device})"


# -- Gymnasium's vector envs ------------------------------------------------------------------
@batch_space.register(TensorBox)
def _batch_tensor_box(space: TensorBox, n: int = 1) -> TensorBox:
    repeats = (n,) + (1,) * space.low.ndim
    return TensorBox(np.tile(space.low, repeats), np.tile(space.high, repeats), dtype=space.dtype,
                     device=space.device, seed=deepcopy(space.np_random))


@create_empty_array.register(TensorBox)
def _empty_tensor_batch(space: TensorBox, n: int = 1, fn=np.zeros) -> torch.Tensor:
    return torch.zeros((n,) + space.shape, dtype=space.torch_dtype, device=space.device)


@concatenate.register(TensorBox)
def _stack_tensors(space: TensorBox, items: Iterable, out: torch.Tensor) -> torch.Tensor:
    return torch.stack(list(items), dim=0, out=out)


@iterate.register(TensorBox)
def _iterate_tensor_batch(space: TensorBox, items: torch.Tensor):
    return iter(items)


@create_shared_memory.register(TensorBox)
def _no_shared_memory(space: TensorBox, n: int = 1, ctx=None):
    raise ValueError("AsyncVectorEnv passes observations between processes as numpy, but this env's are torch tensors "
                     f"(tensor_obs=True): use vectorization_mode='sync', which stacks them on the device, or {NUMPY_ONLY}")


# -- Gymnasium's env checker ------------------------------------------------------------------
_CHECKER = "gymnasium.utils.env_checker"


def refuse_gymnasium_check_env() -> None:
    """Raise a TypeError when called (through any wrappers) by Gymnasium's ``check_env``,
    which would otherwise fail inside its own comparison of two observations
    (``bool(tensor == tensor)``). The env's ``reset`` calls this with ``tensor_obs=True``;
    it walks the call stack, so it runs once per episode, never per step."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__") == _CHECKER:
            raise TypeError("gymnasium.utils.env_checker.check_env compares observations as numpy arrays, but this "
                            f"env returns torch tensors (tensor_obs=True): to check it, {NUMPY_ONLY}")
        frame = frame.f_back


def action_space(selection: str, batch_size: int, num_patches: int) -> spaces.Space:
    """``"batch"``: one mask (N,); ``"image"``: a mask per image (B, N); ``"count"``: a + 1 patches."""
    return {"batch": spaces.MultiBinary(num_patches), "image": spaces.MultiBinary((batch_size, num_patches)),
            "count": spaces.Discrete(num_patches)}[selection]


def observation_space(obs_type: str, batch_size: int, num_patches: int, dim: int,
                      tensor_device: Optional[torch.device]) -> spaces.Box:
    """The Box of each ``obs_type``; a `TensorBox` on `tensor_device` for ``tensor_obs=True``."""
    b, n = batch_size, num_patches
    shape = {"embeddings": (b, n, dim), "pooled": (n, dim), "attention": (b, n),
             "progress": (len(PROGRESS_FEATURES),)}[obs_type]
    box = dict(low=-np.inf, high=np.inf, shape=shape, dtype=np.float32)
    return spaces.Box(**box) if tensor_device is None else TensorBox(**box, device=tensor_device)

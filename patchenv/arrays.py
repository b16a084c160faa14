"""The one conversion of an action or observation (numpy, list or torch tensor) to numpy,
of a step's device values to numpy in one trip, and of host arrays to the device without
waiting."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


_NUMPY_FLOATS = (torch.float16, torch.float32, torch.float64)


def to_numpy(x) -> np.ndarray:
    """`x` as a numpy array; a tensor is detached and copied to the host (a device sync).
    Floating dtypes numpy lacks (bfloat16, float8) become float32 first."""
    if not isinstance(x, torch.Tensor):
        return np.asarray(x)
    t = x.detach()
    if t.is_floating_point() and t.dtype not in _NUMPY_FLOATS:
        t = t.float()
    return t.cpu().numpy()


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """`array` (host) as a tensor on `device`, without the host waiting: on CUDA through
    pinned memory and a non-blocking copy (a plain copy from pageable memory waits for the
    device's queue to drain); on the CPU a tensor over the array's own memory."""
    t = torch.from_numpy(np.require(array, requirements="C"))
    if device.type != "cuda":
        return t
    return t.pin_memory().to(device, non_blocking=True)


def rows_of(tensor: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
    """``tensor[rows]`` for distinct host indices `rows` of its first dimension, in
    increasing order; the tensor itself when they are all of them (a step of every run:
    no copy, no gather, which a small CPU step would pay for in time)."""
    return tensor if _all_rows(tensor, rows) else tensor[to_device(rows, tensor.device)]


def set_rows(tensor: torch.Tensor, rows: np.ndarray, values: torch.Tensor) -> None:
    """``tensor[rows] = values`` for host indices `rows`, in place (`rows_of`'s inverse)."""
    if _all_rows(tensor, rows):
        tensor.copy_(values)
    else:
        tensor[to_device(rows, tensor.device)] = values


def _all_rows(tensor: torch.Tensor, rows: np.ndarray) -> bool:
    return len(rows) == tensor.shape[0]  # distinct and increasing: then 0, 1, ..., n - 1


def to_numpy_all(tensors: Sequence[torch.Tensor]) -> list[np.ndarray]:
    """`tensors` (of any dtypes and shapes, on one device) as numpy arrays, copied to the
    host in one trip: their bytes are joined on the device, so the host waits once for
    all of them (one device sync), not once per tensor."""
    if not tensors:
        return []
    flat = [t.detach().contiguous().reshape(-1) for t in tensors]
    joined = torch.cat([t.view(torch.uint8) for t in flat]).cpu().numpy()  # note: the one sync
    out, at = [], 0
    for t, f in zip(tensors, flat):
        size = f.numel() * f.element_size()
        out.append(joined[at:at + size].view(_numpy_dtype(f.dtype)).reshape(tuple(t.shape)).copy())
        at += size
    return out


_NUMPY_DTYPES = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64,
                 torch.bool: np.bool_, torch.uint8: np.uint8, torch.int8: np.int8, torch.int16: np.int16,
                 torch.int32: np.int32, torch.int64: np.int64}


def _numpy_dtype(dtype: torch.dtype) -> type:
    if dtype not in _NUMPY_DTYPES:
        raise TypeError(f"to_numpy_all takes tensors of a dtype numpy has ({sorted(map(str, _NUMPY_DTYPES))}), got {dtype}")
    return _NUMPY_DTYPES[dtype]

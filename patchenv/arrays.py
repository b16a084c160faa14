"""The one conversion of an action or observation (numpy, list or torch tensor) to numpy."""
from __future__ import annotations

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

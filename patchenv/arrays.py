"""The one conversion of an action or observation (numpy, list or torch tensor) to numpy."""
from __future__ import annotations

import numpy as np
import torch


def to_numpy(x) -> np.ndarray:
    """`x` as a numpy array; a tensor is detached and copied to the host (a device sync)."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)

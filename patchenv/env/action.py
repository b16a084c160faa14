"""An agent's action, validated and parsed once into a `Keep` (`patchenv.model.keep`).

Masks (``selection="batch"``: (N,); ``"image"``: (B, N)) of 0/1 in any real dtype, as a
numpy array, a list or a torch tensor; counts (``"count"``: an integer a, keeping a + 1
patches of every image, drawn uniformly at random per image from the env's generator).
A bad action raises a TypeError or ValueError saying what was expected; nothing changes.
"""
from __future__ import annotations

import numpy as np
import torch

from patchenv.arrays import to_device, to_numpy
from patchenv.model.keep import Keep, keep_all
from patchenv.model.vit import PaddedKeep


def parse_action(action, selection: str, num_patches: int, batch_size: int, device: torch.device,
                 rng: np.random.Generator) -> Keep:
    """The `Keep` of `action`. A count draws its patches from `rng` (the env's ``np_random``,
    or evaluation's own generator)."""
    if selection == "count":
        return _parse_count(action, num_patches, batch_size, device, rng)
    n, b = num_patches, batch_size
    expected = f"({n},)" if selection == "batch" else f"({b}, {n})"
    what = f"a 0/1 mask of shape {expected} (numpy array, list or torch tensor)"
    a = _as_array(action, what)
    if a.dtype == object or a.dtype.kind not in "biuf":
        raise TypeError(f"action must be {what}, got dtype {a.dtype}")
    shape = (n,) if selection == "batch" else (b, n)
    if a.shape != shape:
        raise ValueError(f"action must be {what}, got shape {a.shape}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(f"action must be {what}; it holds NaN or infinite values")
    if a.dtype != np.bool_:
        other = (a != 0) & (a != 1)  # np.isin(a, (0, 1))'s answer, without its overhead per call
        if other.any():
            raise ValueError(f"action must be {what}; it holds other values: {np.unique(a[other])[:5].tolist()}")
    mask = a.astype(bool)
    counts = mask.sum(axis=-1)
    if (counts == 0).any():
        where = "the mask" if selection == "batch" else f"row(s) {np.flatnonzero(counts == 0)[:5].tolist()}"
        raise ValueError(f"action must keep at least one patch; {where} keep(s) none")
    if selection == "batch":
        if counts == n:
            return keep_all(b, n)
        rows = np.broadcast_to(mask, (b, n))
        return Keep(to_device(np.flatnonzero(mask), device), rows, np.full(b, counts, dtype=np.int64))
    per_image = counts.astype(np.int64)
    if (counts == counts[0]).all():
        if counts[0] == n:
            return keep_all(b, n)
        # Equal counts: per-image index rows, no padding, same cost as a shared mask.
        idx = np.argsort(~mask, axis=1, kind="stable")[:, :counts[0]]
        return Keep(to_device(idx, device), mask, per_image)
    # Unequal counts: padded here to the largest, so the device's counts are never read.
    longest = int(counts.max())
    idx = np.argsort(~mask, axis=1, kind="stable")[:, :longest]
    real = np.arange(longest) < counts[:, None]
    return Keep(PaddedKeep(to_device(idx, device), to_device(real, device)), mask, per_image)


def _as_array(action, what: str) -> np.ndarray:
    """`action` as numpy, refusing what has no faithful numpy form."""
    if action is None or isinstance(action, (str, bytes, dict)):
        raise TypeError(f"action must be {what}, got {type(action).__name__}")
    if isinstance(action, torch.Tensor):
        kind = ("meta-device tensor (it holds no values)" if action.is_meta else
                "nested tensor" if action.is_nested else
                f"quantized tensor ({action.dtype}; call .dequantize() first)" if action.is_quantized else
                f"sparse tensor (layout {action.layout}; call .to_dense() first)" if action.layout != torch.strided
                else None)
        if kind is not None:  # none of these converts to numpy
            raise TypeError(f"action must be {what}, a dense tensor of real dtype; got a {kind}")
        return to_numpy(action)  # note: sync; the mask's length decides the sequence length
    if np.ma.is_masked(action):
        raise TypeError(f"action must be {what}, got a masked array with masked entries (its mask would be "
                        f"ignored; fill them first, e.g. action.filled(0))")
    try:
        return np.asarray(action)
    except Exception as e:
        raise TypeError(f"action must be {what}; could not convert it ({e})") from None


def _parse_count(action, n: int, b: int, device: torch.device, rng: np.random.Generator) -> Keep:
    what = f"an integer in [0, {n - 1}] (action a keeps a + 1 patches per image)"
    if isinstance(action, (bool, np.bool_)) or action is None or isinstance(action, (str, bytes, dict)):
        raise TypeError(f"action must be {what}, got {type(action).__name__}")
    try:
        a = to_numpy(action)
    except Exception as e:
        raise TypeError(f"action must be {what}; could not convert it ({e})") from None
    if a.dtype.kind not in "iu":
        raise TypeError(f"action must be {what}, got dtype {a.dtype}")
    if a.size != 1 or a.ndim > 1:
        raise ValueError(f"action must be {what} (a scalar, or an array of one element), got shape {a.shape}")
    a = int(a.reshape(()))
    if not 0 <= a < n:
        raise ValueError(f"action must be {what}, got {a}")
    k = a + 1
    if k == n:
        return keep_all(b, n)
    # k distinct patches per image, uniformly: the first k of a random permutation per row.
    idx = np.sort(np.argsort(rng.random((b, n)), axis=1)[:, :k], axis=1)
    mask = np.zeros((b, n), dtype=bool)
    np.put_along_axis(mask, idx, True, axis=1)
    return Keep(to_device(idx, device), mask, np.full(b, k, dtype=np.int64))

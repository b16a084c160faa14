"""scikit-learn's digits: 1,797 8x8 images shipped with the library (offline), upsampled
to the asked side with C channels so the patch geometry matches CIFAR's."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from patchenv.data.images import ImageData, channel_stats


def load(channels: int, image_size: int = 32) -> ImageData:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images).float().unsqueeze(1) / 16.0  # (1797, 1, 8, 8) in [0, 1]
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False,
                      antialias=image_size < 8)
    x = (x * 255).round().clamp(0, 255).to(torch.uint8).expand(-1, channels, -1, -1).contiguous()
    y = torch.from_numpy(d.target.astype(np.int64))
    # A fixed stratified-by-permutation split: 20% test, the same on every machine.
    perm = torch.from_numpy(np.random.default_rng(0).permutation(len(y)))
    n_test = len(y) // 5
    test, train = perm[:n_test], perm[n_test:]
    mean, std = channel_stats(x[train])
    return ImageData("digits", x[train], y[train], x[test], y[test], 10, mean, std)


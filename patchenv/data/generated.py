"""``synthetic``: data generated from a seed, learnable (class templates plus noise), offline."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from patchenv.data.images import ImageData, channel_stats


def synthetic(n_train: int = 2048, n_test: int = 512, num_classes: int = 10, seed: int = 0,
              channels: int = 3, image_size: int = 32) -> ImageData:
    """Learnable random data: each class is a smooth random template; an image is its
    class template, randomly brightened, plus pixel noise."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.rand(num_classes, channels, image_size // 4, image_size // 4, generator=g)
    templates = F.interpolate(templates, size=(image_size, image_size), mode="bilinear", align_corners=False)

    def make(n):
        y = torch.randint(num_classes, (n,), generator=g)
        scale = 0.7 + 0.6 * torch.rand(n, 1, 1, 1, generator=g)
        x = templates[y] * scale + 0.25 * torch.randn(n, channels, image_size, image_size, generator=g)
        return (x.clamp(0, 1) * 255).round().to(torch.uint8), y

    train_x, train_y = make(n_train)
    test_x, test_y = make(n_test)
    mean, std = channel_stats(train_x)
    return ImageData("synthetic", train_x, train_y, test_x, test_y, num_classes, mean, std)


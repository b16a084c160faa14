"""Batches on the device (airbench's way): uint8 to float, normalisation, and the paper's
augmentation (random crop with 4-pixel padding, horizontal flip) as batched tensor ops."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def to_unit(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 in [0, 1] (torchvision's ToTensor)."""
    return x_uint8.float().div_(255)


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """float (B, C, H, W) in [0, 1] -> normalised; mean/std shaped (1, C, 1, 1)."""
    return (x - mean) / std


def augment(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with `pad`-pixel zero padding and random horizontal flip, batched.

    x is (B, C, H, W), the uint8 images or in [0, 1] before normalisation, so the padding
    is black as in the paper's torchvision pipeline (RandomCrop, flip, ToTensor,
    Normalize). Pure indexing: augmenting the uint8 images, then `to_unit`, gives the same
    numbers as the other order, with a quarter of the bytes moved."""
    return apply_augmentation(x, *draw_augmentation(len(x), x.device, generator, pad), pad=pad)


def draw_augmentation(b: int, device: torch.device, generator: torch.Generator, pad: int = 4) -> tuple:
    """The random numbers of `augment` for b images: (dy, dx, flip), in the order it draws
    them. A population draws each run's from the run's generator, then applies them all
    in one `apply_augmentation`."""
    dy = torch.randint(0, 2 * pad + 1, (b,), device=device, generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b,), device=device, generator=generator)
    flip = torch.rand(b, device=device, generator=generator) < 0.5
    return dy, dx, flip


def apply_augmentation(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor,
                       pad: int = 4) -> torch.Tensor:
    """Crop each image of x (B, C, H, W) at offset (dy, dx) of its zero-padded copy and flip
    those marked, with one gather over the flattened pixels (twice as fast on the CPU as
    indexing rows and columns, and the same pixels)."""
    b, c, h, w = x.shape
    dev = x.device
    hp, wp = h + 2 * pad, w + 2 * pad
    padded = F.pad(x, (pad, pad, pad, pad)).reshape(b, c, hp * wp)
    ar_h = torch.arange(h, device=dev)
    ar_w = torch.arange(w, device=dev)
    cols = torch.where(flip[:, None], ar_w.flip(0)[None], ar_w[None]) + dx[:, None]  # (B, W)
    rows = ar_h[None] + dy[:, None]  # (B, H)
    pixel = (rows[:, :, None] * wp + cols[:, None, :]).reshape(b, 1, h * w)  # (B, 1, H*W) into padded
    return padded.gather(2, pixel.expand(b, c, h * w)).view(b, c, h, w)

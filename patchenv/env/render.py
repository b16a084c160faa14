"""What ``render()`` draws: the images of the batch just trained, with the dropped patches
greyed out, side by side in one uint8 (H, W, 3) frame (``render_mode="rgb_array"``, so
Gymnasium's ``RecordVideo`` can film which patches an agent keeps)."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from patchenv.model.keep import Keep

IMAGES = 4  # images per frame
SCALE = 4  # pixels per image pixel: a 32x32 image is drawn 128x128
GAP = 2  # grey pixels between images
GREY = 0.5


def frame(images: torch.Tensor, keep: Optional[torch.Tensor], patch_size: int) -> np.ndarray:
    """`images` (n, C, H, W) in [0, 1]; `keep` (n, N) bool (True = trained on) or None
    (every patch). Dropped patches are blended towards grey, kept ones drawn as they are."""
    x = images.detach().float().cpu().clamp(0, 1)  # note: device-to-host copy (a few images)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    n, _, h, w = x.shape
    if keep is not None:
        grid = keep.detach().cpu().view(n, h // patch_size, w // patch_size).float()
        mask = grid.repeat_interleave(patch_size, 1).repeat_interleave(patch_size, 2)[:, None]  # (n, 1, H, W)
        x = x * mask + (0.25 * x + 0.75 * GREY) * (1 - mask)
    x = x.repeat_interleave(SCALE, 2).repeat_interleave(SCALE, 3)
    tiles = [t.permute(1, 2, 0).numpy() for t in x]
    gap = np.full((h * SCALE, GAP, 3), GREY, dtype=np.float32)
    row = np.concatenate([part for t in tiles for part in (t, gap)][:-1], axis=1)
    return (row * 255).round().astype(np.uint8)


def remember(batch: torch.Tensor, keep: Keep) -> tuple[torch.Tensor, torch.Tensor]:
    """What the next ``render()`` draws of a step: the first `IMAGES` images of the batch
    it trained on and their (n, N) keep mask (on the host)."""
    n = min(IMAGES, len(batch))
    return batch[:n].clone(), torch.from_numpy(np.ascontiguousarray(keep.mask[:n]))

"""Tensors as views of one flat buffer: the layout `FlatAdam` (one model's weights,
gradients and moments), `StackedViT` (row i: run i's weights) and `StackedAdam` (row i:
run i's moments) share, so one kernel updates what many tensors show."""
from __future__ import annotations

from typing import Sequence

import torch


def flat_views(buffer: torch.Tensor, shapes: Sequence[tuple]) -> list[torch.Tensor]:
    """Views of the 1-D `buffer`, one per shape in `shapes`, laid end to end from its start
    (no copy: writing a view writes the buffer)."""
    sizes = [int(torch.Size(shape).numel()) for shape in shapes]
    if sum(sizes) > buffer.numel():
        raise ValueError(f"a buffer of {buffer.numel()} elements cannot hold {sum(sizes)}")
    chunks = buffer[:sum(sizes)].split(sizes)
    return [chunk.view(shape) for chunk, shape in zip(chunks, shapes)]

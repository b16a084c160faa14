"""Checks every layer shares, each written once: a run's seed, one-line error messages,
and settings too large for the machine's memory."""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch

# numpy's global generator (seeded by the runner with the run's seed) takes seeds in [0, 2**32).
SEED_MAX = 2**32 - 1


def check_seed(seed, what: str = "seed") -> int:
    """A seed (a run's or an agent's): an integer in [0, 2**32 - 1], numpy's seed range."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= SEED_MAX:
        raise ValueError(f"{what} must be an integer in [0, {SEED_MAX}] (numpy's seed range), got {seed!r}")
    return int(seed)


def one_line(message) -> str:
    """An error message on one line: messages of other libraries that get embedded may
    span several (torch's do)."""
    return " ".join(str(message).split())


def out_of_memory(e: BaseException) -> bool:
    """Settings too large for the machine (a huge --dim or --image-size): torch reports a
    failed CPU allocation as a RuntimeError, a CUDA one as OutOfMemoryError."""
    return isinstance(e, (MemoryError, torch.cuda.OutOfMemoryError)) or (
        isinstance(e, RuntimeError) and "can't allocate memory" in str(e))


def memory_message(e: BaseException) -> str:
    """The one-line error for `out_of_memory` settings: torch's first line, what to shrink."""
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    return (f"not enough memory for these settings ({first}); try a smaller --preset, --batch-size or --image-size "
            f"(a checkpoint already written is kept)")


@contextlib.contextmanager
def out_of_memory_as(error: type) -> Iterator[None]:
    """The one out-of-memory handler of the front ends: inside the block, settings too
    large for the machine become ``error(memory_message(e))`` (a one-line user error);
    every other exception passes unchanged."""
    try:
        yield
    except (MemoryError, RuntimeError) as e:
        if not out_of_memory(e):
            raise
        raise error(memory_message(e)) from None

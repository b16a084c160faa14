"""The AgentViT notebook's random mask, drawn in one place.

The notebook explores (with probability eps) by sampling a uniform random N-vector (its
``MultiContinue`` space) and keeping the patches whose value is at least the vector's
mean: about N/2 patches, a different count each draw. Its final table also evaluates the
trained ViT with masks drawn this way. `agents.agentvit` explores with this function and
the runner (`patchenv.run`) evaluates with it (``test_accuracy_random_masks``), so both
are the same draw.
"""
from __future__ import annotations

import numpy as np


def exploration_mask(rng: np.random.Generator, num_patches: int) -> np.ndarray:
    """int8 mask (N,): U(0, 1)^N cut at its own mean; never empty (the largest value is
    at least the mean). Draws exactly ``rng.random(num_patches)``."""
    values = rng.random(num_patches)
    return (values >= values.mean()).astype(np.int8)

"""The next batches of a population's runs, loaded as one: each run moves its own data
position and draws its own augmentation (from its own generator, in the single env's
order), then one gather, one augmentation and one normalisation serve every run. The
images are those each run's single env would load (the same arithmetic, image by image)."""
from __future__ import annotations

from typing import Sequence

import torch

from patchenv.env.training_run import TrainingRun


def advance_all(runs: Sequence[TrainingRun]) -> None:
    """Every run in `runs` (sharing one `RunSetup`) to its next batch; their embeddings and
    observations are the population's to make."""
    if not runs:
        return
    setup = runs[0].setup
    b = setup.batch_size
    idx, draws = [], []
    for run in runs:
        run_idx, run_draws = run.next_batch_draws()
        idx.append(run_idx)
        draws.append(run_draws)
    idx = torch.cat(idx)
    dy, dx, flip = (torch.cat(d) for d in zip(*draws))
    x, y = setup.training_batch(idx, (dy, dx, flip))  # the single env's arithmetic, image by image
    for k, run in enumerate(runs):
        run.set_batch(x[k * b:(k + 1) * b], y[k * b:(k + 1) * b])

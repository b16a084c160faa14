"""``env.evaluate(split, masks)``: loss and accuracy of a run's current ViT on a whole split,
unaugmented, with every patch or with an agent's masks. Changes no training state and
draws none of the run's random numbers."""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from patchenv.env.action import parse_action
from patchenv.env.training_run import TrainingRun
from patchenv.model.training import autocast

# Seeds the random patches evaluate() draws for selection="count": evaluation draws none
# of the run's random numbers, and every evaluation of a count keeps the same patches.
EVAL_COUNT_SEED = 0
SPLITS = ("test", "val", "train")


@torch.no_grad()
def evaluate(run: TrainingRun, split: str = "test", masks: Any = None) -> dict:
    """`PatchSelectionEnv.evaluate` of `run` (the env's docstring says what it returns)."""
    if run.model is None:
        raise gym.error.ResetNeeded("call reset() before evaluate(): there is no ViT yet")
    if split not in SPLITS:
        raise ValueError(f"split must be 'test', 'val' or 'train', got {split!r}")
    s = run.setup
    if split == "val" and s.val is None:
        raise ValueError("split='val' needs a validation split: build the env with val_fraction > 0 (e.g. 0.1)")
    xs, ys = {"test": (s.data.test_x, s.data.test_y), "train": (s.data.train_x, s.data.train_y),
              "val": s.val}[split]
    if split == "test" and s.eval_idx is not None:
        xs, ys = xs[s.eval_idx], ys[s.eval_idx]
    model, cfg = run.model, s.config
    was_training = model.training
    model.eval()
    # With masks, batches have the training shape (B, ...) so an agent's act() fits;
    # the last partial batch is padded with copies of its first image, then cut off.
    bs = cfg.eval_batch_size if masks is None else s.batch_size
    count_rng = np.random.default_rng(EVAL_COUNT_SEED)  # the patches a count keeps, not the run's draws
    total_loss = torch.zeros((), device=s.device)
    total_correct = torch.zeros((), device=s.device)
    n = len(ys)
    for start in range(0, n, bs):
        x = s.normalize(xs[start:start + bs])
        y = ys[start:start + bs]
        r = len(y)
        with autocast(s.device, cfg.amp):
            if masks is None:
                logits = model(x)
            else:
                if r < bs:
                    x = torch.cat([x, x[:1].expand(bs - r, -1, -1, -1)])
                tokens = model.embed(x)
                mask = masks(run.observe(tokens, for_agent=True)) if callable(masks) else masks
                keep = parse_action(mask, cfg.selection, s.num_patches, s.batch_size, s.device, count_rng)
                logits = model.forward_tokens(tokens, keep.index)[:r]
        total_loss += F.cross_entropy(logits.float(), y, reduction="sum")
        total_correct += (logits.argmax(-1) == y).sum()
    model.train(was_training)
    loss_v, correct_v = torch.stack([total_loss, total_correct.float()]).tolist()  # note: one sync
    return {"accuracy": correct_v / n, "loss": loss_v / n, "n": n}

"""One training update of every run of a population: one forward, one backward, one Adam
step over the stacked weights, the single env's `train_step` for E runs at once.

Each run's loss is its own batch's mean cross-entropy; their sum is differentiated, which
gives each run exactly its own gradient (the runs share no weights). A run whose loss or
gradient norm is not finite, or that is not training this step, gets no update (its
moments and step count stay), as a single env skips a diverged update.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from patchenv.model.stacked import StackedViT
from patchenv.model.stacked_adam import StackedAdam
from patchenv.model.training import StepResult, autocast


def population_step(stacked: StackedViT, adam: StackedAdam, weights: dict, tokens: torch.Tensor, y: torch.Tensor,
                    index: Optional[torch.Tensor], key_mask: Optional[torch.Tensor], amp: Optional[str],
                    training: torch.Tensor) -> list[StepResult]:
    """Train the runs where `training` (E,) bool on the device is True on `tokens` (E, B,
    N, D, embedded from `weights` with its autograd graph) and labels `y` (E, B). One
    StepResult per run, of 0-d views on the device: nothing is read on the host."""
    e = tokens.shape[0]
    with autocast(tokens.device, amp):
        logits = stacked.forward_tokens(weights, tokens, index, key_mask)  # (E, B, classes)
        losses = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none").view(e, -1).mean(1)
    tokens.retain_grad()  # dL/d(token), each run's patch_credit()
    adam.zero_grad()
    losses.sum().backward()
    grad_norms = adam.flat.grad.norm(dim=1)  # (E,): each run's total gradient norm
    correct = (logits.argmax(dim=-1) == y).float().mean(dim=1)
    losses, grad_norms = losses.detach().float(), grad_norms.float()
    finite = torch.isfinite(losses) & torch.isfinite(grad_norms)
    adam.step(finite & training)
    token_grad = tokens.grad
    adam.zero_grad()
    return [StepResult(losses[i], correct[i], grad_norms[i], finite[i],
                       None if token_grad is None else token_grad[i]) for i in range(e)]

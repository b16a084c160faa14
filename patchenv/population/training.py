"""One training update of every run of a population: one forward, one backward, one Adam
step over the stacked weights, the single env's `train_step` for E runs at once.

Each run's loss is its own batch's mean cross-entropy; their sum is differentiated, which
gives each run exactly its own gradient (the runs share no weights). A run whose loss or
gradient norm is not finite, or that is not training this step, gets no update (its
moments and step count stay), as a single env skips a diverged update. Nothing is read on
the host: `stacked_update` is what a CUDA graph records too (`patchenv.population.graphs`).
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from patchenv.model.stacked import StackedViT
from patchenv.model.stacked_adam import StackedAdam
from patchenv.model.training import StepResult, autocast


def stacked_update(stacked: StackedViT, adam: StackedAdam, weights: dict, tokens: torch.Tensor, y: torch.Tensor,
                   index: Optional[torch.Tensor], key_mask: Optional[torch.Tensor], training: torch.Tensor,
                   amp: Callable[[], AbstractContextManager], token_grad: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Train the runs where `training` (E,) bool is True on `tokens` (E, B, N, D, embedded
    from `weights` with its autograd graph) and labels `y` (E, B), inside the context
    `amp()`; returns ([losses, accuracies, gradient norms] (3, E) float32, finite (E,)
    bool), on the device. `token_grad`: keep dL/d(token) in ``tokens.grad``."""
    e = tokens.shape[0]
    with amp():
        logits = stacked.forward_tokens(weights, tokens, index, key_mask)  # (E, B, classes)
        losses = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none").view(e, -1).mean(1)
    if token_grad:
        tokens.retain_grad()  # dL/d(token), each run's patch_credit()
    adam.zero_grad()
    losses.sum().backward()
    grad_norms = adam.flat.grad.norm(dim=1).float()  # (E,): each run's total gradient norm
    correct = (logits.argmax(dim=-1) == y).float().mean(dim=1)
    losses = losses.detach().float()
    finite = torch.isfinite(losses) & torch.isfinite(grad_norms)
    adam.step(finite & training)
    return torch.stack([losses, correct, grad_norms]), finite


def step_results(measured: torch.Tensor, finite: torch.Tensor, token_grad: Optional[torch.Tensor] = None
                 ) -> list[StepResult]:
    """One StepResult per run from `stacked_update`'s outputs (0-d views on the device)."""
    return [StepResult(measured[0, i], measured[1, i], measured[2, i], finite[i],
                       None if token_grad is None else token_grad[i]) for i in range(finite.shape[0])]


def population_step(stacked: StackedViT, adam: StackedAdam, weights: dict, tokens: torch.Tensor, y: torch.Tensor,
                    index: Optional[torch.Tensor], key_mask: Optional[torch.Tensor], amp: Optional[str],
                    training: torch.Tensor) -> list[StepResult]:
    """The eager step: `stacked_update` keeping the token gradients. One StepResult per run,
    of 0-d views on the device: nothing is read on the host."""
    measured, finite = stacked_update(stacked, adam, weights, tokens, y, index, key_mask, training,
                                      lambda: autocast(tokens.device, amp), token_grad=True)
    token_grad = tokens.grad
    adam.zero_grad()
    return step_results(measured, finite, token_grad)

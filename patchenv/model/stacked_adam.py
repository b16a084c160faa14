"""Adam over the stacked weights of E runs (`patchenv.model.stacked.StackedViT`): one
elementwise update of the (E, P) tensor, each run with its own step count, so a run whose
update is skipped (a non-finite loss or gradient) keeps its moments and its count while
the others step.

The arithmetic is torch's fused Adam's (what each single env uses: `make_optimizer`, `FlatAdam`), in
the same order: ``m = lerp(m, g, 1 - b1)``, ``v = b2 v + (1 - b2) g^2``,
``p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``.

`member_optimizer` gives run i a `torch.optim.Adam` over the run's aliased `SimpleViT`
whose state tensors are views of row i: its ``state_dict()`` is exactly what a single
env's optimiser saves, so a run's checkpoint is the single env's format.
"""
from __future__ import annotations

import torch

from patchenv.model.flat_buffer import flat_views
from patchenv.model.vit import SimpleViT


class StackedAdam:
    def __init__(self, flat: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.flat = flat
        self.lr, self.betas, self.eps = float(lr), betas, eps
        self.exp_avg = torch.zeros_like(flat, requires_grad=False)
        self.exp_avg_sq = torch.zeros_like(flat, requires_grad=False)
        self.steps = torch.zeros(flat.shape[0], device=flat.device)  # float32, as fused Adam keeps it

    @torch.no_grad()
    def step(self, apply: torch.Tensor) -> None:
        """Update the runs where `apply` (E,) bool is True; the others keep everything."""
        g = self.flat.grad
        b1, b2 = self.betas
        a = apply.view(-1, 1)
        self.steps += apply.to(self.steps.dtype)
        t = self.steps.double().clamp(min=1).view(-1, 1)  # a run never updated keeps t = 0 (masked anyway)
        bias1 = 1 - b1 ** t
        bias2_sqrt = (1 - b2 ** t).sqrt()
        m = torch.where(a, self.exp_avg.lerp(g, 1 - b1), self.exp_avg)
        v = torch.where(a, self.exp_avg_sq * b2 + (1 - b2) * g * g, self.exp_avg_sq)
        self.exp_avg.copy_(m)
        self.exp_avg_sq.copy_(v)
        step_size = (self.lr / bias1).to(self.flat.dtype)
        update = step_size * m / (v.sqrt() / bias2_sqrt.to(self.flat.dtype) + self.eps)
        self.flat.sub_(torch.where(a, update, torch.zeros_like(update)))

    def zero_grad(self) -> None:
        self.flat.grad = None

    @torch.no_grad()
    def reset_run(self, i: int) -> None:
        """Run i starts afresh: no moments, step 0."""
        self.exp_avg[i].zero_()
        self.exp_avg_sq[i].zero_()
        self.steps[i] = 0

    @torch.no_grad()
    def load_run(self, i: int, optimizer: torch.optim.Optimizer, model: SimpleViT, names: list[str]) -> None:
        """Copy the state of a single run's Adam (over `model`) into row i."""
        params = dict(model.named_parameters())
        state = [optimizer.state.get(params[name], {}) for name in names]
        if not any(state):
            self.reset_run(i)
            return
        self.exp_avg[i].copy_(torch.cat([s["exp_avg"].reshape(-1) for s in state]))
        self.exp_avg_sq[i].copy_(torch.cat([s["exp_avg_sq"].reshape(-1) for s in state]))
        self.steps[i] = float(state[0]["step"])

    def member_optimizer(self, i: int, model: SimpleViT, names: list[str]) -> torch.optim.Optimizer:
        """A single env's Adam over `model` (run i's aliased ViT) whose state is row i."""
        # A plain Adam: its state must be views of row i, not of a buffer of its own (FlatAdam).
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr, fused=True)
        params = dict(model.named_parameters())
        ordered = [params[name] for name in names]
        shapes = [p.shape for p in ordered]
        step = self.steps[i]  # a 0-d view: every parameter's count is the run's
        for p, exp_avg, exp_avg_sq in zip(ordered, flat_views(self.exp_avg[i], shapes),
                                          flat_views(self.exp_avg_sq[i], shapes)):
            optimizer.state[p] = {"step": step, "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}
        return optimizer

"""Adam over one flat buffer: the env's optimiser for the eager step.

torch's fused Adam costs about the same for one tensor as for thirty, because what it
pays is Python per parameter (state lookups, grouping by device and dtype), not
arithmetic: on the tiny ViT (30 tensors, 18k weights) ``zero_grad`` and ``step`` took
about 1 ms of a 7 ms five-patch CPU step. Here the model's weights, gradients and Adam
moments each live in one contiguous buffer, every parameter (and its ``.grad``, and its
state) being a view of it, so a step is one fused update of one tensor, zeroing the
gradients is one fill and their norm one reduction.

What a user sees is a ``torch.optim.Adam`` over the model's parameters: the same kernel
(torch's fused Adam, elementwise, so every weight gets bit for bit the update it would
get alone), and the same ``state_dict`` (per parameter: ``step``, ``exp_avg``,
``exp_avg_sq``), so checkpoints are interchangeable with a plain Adam's.

Two rules keep the views intact:
- ``zero_grad`` fills the gradient buffer with zeros whatever ``set_to_none`` says (a
  ``None`` gradient would make the next backward allocate a new one, outside the buffer);
  the backward then accumulates into the views in place.
- the model must not be moved or have its ``.data`` replaced afterwards (``load_state_dict``
  copies into the parameters in place, which is fine).
"""
from __future__ import annotations

from typing import Optional

import torch

from patchenv.model.flat_buffer import flat_views


class FlatAdam(torch.optim.Adam):
    def __init__(self, model: torch.nn.Module, lr: float):
        params = [p for p in model.parameters() if p.requires_grad]
        super().__init__(params, lr=lr, fused=True)
        first = params[0]
        if any(p.dtype != first.dtype or p.device != first.device for p in params):
            raise ValueError("FlatAdam needs every parameter on one device with one dtype")
        total = sum(p.numel() for p in params)
        self.flat = torch.nn.Parameter(torch.empty(total, dtype=first.dtype, device=first.device))
        self.flat.grad = torch.zeros_like(self.flat)
        self._params = params
        shapes = [p.shape for p in params]
        with torch.no_grad():
            for p, weights, grad in zip(params, flat_views(self.flat.data, shapes), flat_views(self.flat.grad, shapes)):
                weights.copy_(p)
                p.data, p.grad = weights, grad
        self._inner = torch.optim.Adam([self.flat], lr=lr, fused=True)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the one gradient buffer (never ``None``: see the module's docstring)."""
        self.flat.grad.zero_()

    def grad_norm(self) -> torch.Tensor:
        """The total 2-norm of every parameter's gradient, as one reduction."""
        return torch.linalg.vector_norm(self.flat.grad)

    @torch.no_grad()
    def step(self, closure=None, found_inf: Optional[torch.Tensor] = None):
        """One fused update; `found_inf` (0-d float32, 1.0 skips it on the device, as a
        GradScaler's does: `patchenv.model.training.step_unless`)."""
        if closure is not None:
            raise ValueError("FlatAdam.step takes no closure (the env computes its loss itself)")
        inner = self._inner.param_groups[0]
        inner["lr"] = self.param_groups[0]["lr"]  # a scheduler sets the outer group's lr
        if found_inf is None:
            self._inner.step()
        else:
            self._inner.found_inf = found_inf  # read by the fused Adam's step
            try:
                self._inner.step()
            finally:
                del self._inner.found_inf
            # A skipped update's gradient is discarded, as the host would have zeroed it.
            self.flat.grad.masked_fill_(found_inf.bool(), 0.0)
        if not self.state:  # the first step made the moments: show them per parameter
            self._link_state()
        return None

    def _link_state(self) -> None:
        """Each parameter's state: views of the flat moments and the one shared step count."""
        flat_state = self._inner.state[self.flat]
        shapes = [p.shape for p in self._params]
        for p, exp_avg, exp_avg_sq in zip(self._params, flat_views(flat_state["exp_avg"], shapes),
                                          flat_views(flat_state["exp_avg_sq"], shapes)):
            self.state[p] = {"step": flat_state["step"], "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}

    def load_state_dict(self, state_dict: dict) -> None:
        """A plain Adam's (or a FlatAdam's) state over the same parameters, copied into the
        flat buffers."""
        super().load_state_dict(state_dict)
        loaded = [self.state.get(p, {}) for p in self._params]
        self.state.clear()
        self._inner.state.clear()
        inner = self._inner.param_groups[0]
        inner.update({k: v for k, v in self.param_groups[0].items() if k != "params"})
        if not any(loaded):
            return  # saved before the first step: nothing to carry
        if not all(loaded):
            raise ValueError("optimizer state: expected every parameter's Adam state or none")
        flat = self.flat
        self._inner.state[flat] = {
            "step": torch.tensor(float(loaded[0]["step"]), dtype=torch.float32, device=flat.device),
            "exp_avg": torch.cat([s["exp_avg"].reshape(-1) for s in loaded]).to(flat),
            "exp_avg_sq": torch.cat([s["exp_avg_sq"].reshape(-1) for s in loaded]).to(flat),
        }
        self._link_state()

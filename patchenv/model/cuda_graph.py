"""The env's training step replayed from CUDA graphs (``cuda_graph=True``).

Why: the paper's ViT is small (4M parameters, 64 tokens), so on a fast GPU its eager
training step is bound by the CPU launching a few hundred kernels one by one, not by the
GPU: on an H100 the step took ~12.7 ms whatever the number of patches kept. A CUDA graph
records the whole step once (embed, forward on the kept tokens, loss, backward, gradient
norm, fused Adam) and replays it with one launch.

How: one graph per kept-token shape (all patches; K shared indices; (B, K) per-image
indices), captured the second time that shape is seen (the first runs eagerly, a real
training step that also initialises the libraries' workspaces), at most ``max_graphs``
of them (later shapes run eagerly). Inputs are copied into static buffers before a
replay. The divergence rule of the eager step holds inside the graph: a non-finite loss
or gradient norm sets the fused Adam's ``found_inf``, which skips the update (and undoes
its step count). Uneven per-image masks (padding and a key mask whose length depends on
the data) always run eagerly. The optimiser must be built with ``capturable=True``.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Callable, Optional

import torch
import torch.nn.functional as F


class GraphedStep:
    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch_x: torch.Tensor,
                 batch_y: torch.Tensor, autocast: Callable[[], AbstractContextManager], max_graphs: int = 16):
        if batch_x.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, got {batch_x.device}")
        if not all(group.get("capturable") for group in optimizer.param_groups):
            raise ValueError("the optimiser must be built with capturable=True to be captured in a CUDA graph")
        self.model, self.optimizer, self.autocast = model, optimizer, autocast
        self.max_graphs = max_graphs
        self.static_x = torch.empty_like(batch_x)
        self.static_y = torch.empty_like(batch_y)
        # 0-d, like Adam's step counts: the fused Adam subtracts it from them in place.
        self.found_inf = torch.zeros((), device=batch_x.device)
        self._graphs: dict[tuple, tuple] = {}  # shape key -> (graph, static keep or None, outputs)
        self._seen: set[tuple] = set()

    @property
    def shapes(self) -> set[tuple]:
        """The shape keys (`key`) captured so far, one graph each."""
        return set(self._graphs)

    @staticmethod
    def key(keep: Optional[torch.Tensor]) -> Optional[tuple]:
        """The graph a keep argument replays; None when it cannot be graphed (bool masks)."""
        if keep is None:
            return ("all",)
        if keep.dtype == torch.bool:
            return None
        return ("index",) + tuple(keep.shape)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, keep: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """Train one step on (x, y) keeping `keep`; returns ``[loss, accuracy, grad norm]``
        on the device, or None when the caller must run the step eagerly (a shape's first
        occurrence, an ungraphable mask, or the graph budget spent)."""
        k = self.key(keep)
        if k is None or (k not in self._graphs and len(self._graphs) >= self.max_graphs):
            return None
        if k not in self._seen:
            self._seen.add(k)
            return None
        if k not in self._graphs:
            self._graphs[k] = self._capture(keep)
        graph, static_keep, out = self._graphs[k]
        self.static_x.copy_(x)
        self.static_y.copy_(y)
        if static_keep is not None:
            static_keep.copy_(keep)
        graph.replay()
        return out

    def _capture(self, keep: Optional[torch.Tensor]) -> tuple:
        static_keep = None if keep is None else torch.empty_like(keep)
        if static_keep is not None:
            static_keep.copy_(keep)
        self.static_x.zero_()
        self.static_y.zero_()
        model, opt = self.model, self.optimizer
        params = [p for p in model.parameters() if p.requires_grad]
        # Warm-up on a side stream, as CUDA graph capture wants: forward and backward only,
        # so the weights and the optimiser's state do not change.
        side = torch.cuda.Stream(device=self.static_x.device)
        side.wait_stream(torch.cuda.current_stream(self.static_x.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                with self.autocast():
                    logits = model.forward_tokens(model.embed(self.static_x), static_keep)
                    F.cross_entropy(logits.float(), self.static_y).backward()
                opt.zero_grad(set_to_none=True)
        torch.cuda.current_stream(self.static_x.device).wait_stream(side)
        opt.zero_grad(set_to_none=True)  # the backward allocates the grads in the graph's pool
        graph = torch.cuda.CUDAGraph()
        opt.found_inf = self.found_inf  # read by the fused Adam; only while capturing
        try:
            with torch.cuda.graph(graph):
                with self.autocast():
                    logits = model.forward_tokens(model.embed(self.static_x), static_keep)
                    loss = F.cross_entropy(logits.float(), self.static_y)
                loss.backward()
                grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params])
                correct = (logits.argmax(dim=-1) == self.static_y).float().mean()
                finite = torch.isfinite(loss.detach()) & torch.isfinite(grad_norm)
                self.found_inf.copy_((~finite).float())
                opt.step()
                out = torch.stack([loss.detach().float(), correct, grad_norm.float()])
        finally:
            del opt.found_inf
        return graph, static_keep, out

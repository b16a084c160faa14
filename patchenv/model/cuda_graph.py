"""The env's training step replayed from CUDA graphs (``cuda_graph=True``).

Why: the paper's ViT is small (4M parameters, 64 tokens), so on a fast GPU its eager
training step is bound by the CPU launching a few hundred kernels one by one, not by the
GPU: on an H100 the step took ~12.7 ms whatever the number of patches kept. A CUDA graph
records the whole step once (embed, forward on the kept tokens, loss, backward, gradient
norm, fused Adam) and replays it with one launch.

How: `ShapeGraphs` is the machinery: one graph per shape key, captured the second time
that shape is seen (the first runs eagerly, a real training step that also initialises
the libraries' workspaces), at most ``max_graphs`` of them (later shapes run eagerly).
Each graph has its own static input buffers, into which the inputs are copied before a
replay; its outputs are device tensors the next replay overwrites. What a step records
is its subclass's: `GraphedStep`, a single env's step, here (one graph per kept-token
shape: all patches; K shared indices; (B, K) per-image indices); a population's is
`patchenv.population.graphs.PopulationGraphs`. The divergence rule of the eager step
holds inside a graph: a non-finite loss or gradient norm skips the update (here the fused
Adam's ``found_inf``, which also undoes its step count). Uneven per-image masks (padding
and a key mask whose length depends on the data) always run eagerly. The optimiser must
be built with ``capturable=True``.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F


class ShapeGraphs:
    """Training steps replayed from CUDA graphs, one per shape key (module docstring).
    Subclasses say what a step is: `_warm_up` (forward and backward on the static inputs,
    changing no weights) and `_record` (the whole step, captured into a graph)."""

    def __init__(self, device: torch.device, autocast: Callable[[], AbstractContextManager], max_graphs: int = 16):
        if device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, got {device}")
        self.device, self.autocast, self.max_graphs = device, autocast, max_graphs
        self._graphs: dict[tuple, tuple] = {}  # shape key -> (graph, static inputs, outputs)
        self._seen: set[tuple] = set()

    @property
    def shapes(self) -> set[tuple]:
        """The shape keys captured so far, one graph each."""
        return set(self._graphs)

    def replay(self, key: Optional[tuple], inputs: dict[str, Optional[torch.Tensor]]) -> Any:
        """Run the step on `inputs` (None entries: absent for this shape) from the graph of
        shape `key`: its outputs, or None when the caller must run the step eagerly (a
        shape's first occurrence, an ungraphable one (`key` None), or the budget spent)."""
        if key is None or (key not in self._graphs and len(self._graphs) >= self.max_graphs):
            return None
        if key not in self._seen:
            self._seen.add(key)
            return None
        if key not in self._graphs:
            self._graphs[key] = self._capture(inputs)
        graph, static, out = self._graphs[key]
        for name, value in inputs.items():
            if value is not None:
                static[name].copy_(value)
        graph.replay()
        return out

    def _capture(self, inputs: dict[str, Optional[torch.Tensor]]) -> tuple:
        static = {name: None if value is None else value.clone() for name, value in inputs.items()}
        # Warm-up on a side stream, as CUDA graph capture wants: forward and backward only,
        # so the weights and the optimiser's state do not change.
        current = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(device=self.device)
        side.wait_stream(current)
        with torch.cuda.stream(side):
            for _ in range(2):
                self._warm_up(static)
        current.wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        return graph, static, self._record(graph, static)

    def _warm_up(self, static: dict) -> None:
        raise NotImplementedError

    def _record(self, graph: torch.cuda.CUDAGraph, static: dict) -> Any:
        raise NotImplementedError


class GraphedStep(ShapeGraphs):
    """A single env's training step (`patchenv.model.training.train_step`) from CUDA graphs."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device,
                 autocast: Callable[[], AbstractContextManager], max_graphs: int = 16):
        super().__init__(device, autocast, max_graphs)
        if not all(group.get("capturable") for group in optimizer.param_groups):
            raise ValueError("the optimiser must be built with capturable=True to be captured in a CUDA graph")
        self.model, self.optimizer = model, optimizer
        # 0-d, like Adam's step counts: the fused Adam subtracts it from them in place.
        self.found_inf = torch.zeros((), device=device)

    @staticmethod
    def key(keep) -> Optional[tuple]:
        """The graph a keep argument replays; None when it is not graphed (bool masks and
        padded rows of unequal counts)."""
        if keep is None:
            return ("all",)
        if not isinstance(keep, torch.Tensor) or keep.dtype == torch.bool:
            return None
        return ("index",) + tuple(keep.shape)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, keep: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """Train one step on (x, y) keeping `keep`; returns ``[loss, accuracy, grad norm]``
        on the device, or None when the caller must run the step eagerly."""
        return self.replay(self.key(keep), {"x": x, "y": y, "keep": keep})

    def _warm_up(self, static: dict) -> None:
        model = self.model
        with self.autocast():
            logits = model.forward_tokens(model.embed(static["x"]), static["keep"])
            F.cross_entropy(logits.float(), static["y"]).backward()
        self.optimizer.zero_grad(set_to_none=True)

    def _record(self, graph: torch.cuda.CUDAGraph, static: dict) -> torch.Tensor:
        model, opt = self.model, self.optimizer
        params = [p for p in model.parameters() if p.requires_grad]
        opt.zero_grad(set_to_none=True)  # the backward allocates the grads in the graph's pool
        opt.found_inf = self.found_inf  # read by the fused Adam; only while capturing
        try:
            with torch.cuda.graph(graph):
                with self.autocast():
                    logits = model.forward_tokens(model.embed(static["x"]), static["keep"])
                    loss = F.cross_entropy(logits.float(), static["y"])
                loss.backward()
                grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params])
                correct = (logits.argmax(dim=-1) == static["y"]).float().mean()
                finite = torch.isfinite(loss.detach()) & torch.isfinite(grad_norm)
                self.found_inf.copy_((~finite).float())
                opt.step()
                out = torch.stack([loss.detach().float(), correct, grad_norm.float()])
        finally:
            del opt.found_inf
        return out

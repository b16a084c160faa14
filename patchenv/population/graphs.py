"""A population's training step replayed from CUDA graphs (``PopulationEnv(cuda_graph=True)``,
CUDA only): the single env's machinery (`patchenv.model.cuda_graph.ShapeGraphs`) recording
`patchenv.population.training.stacked_update`, embedding included.

A graph replays fixed shapes, so there is one per shape of the population's token
selection (`patchenv.population.keeps.join`): every patch; or the (E, B, L) index of the
padded length L, with or without a key mask. The runs' counts decide L, so a population
whose runs keep few distinct counts replays few graphs; a shape past ``max_graphs`` runs
eagerly. Which runs train is an input (a bool per run), so autoresets replay the same
graph. The update is the stacked Adam's, in place, skipped on the device for a run whose
loss or gradient is not finite. The graphs keep no token gradients (``patch_credit()``
needs the eager step, as a single env's).
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Callable, Optional

import torch

from patchenv.model.cuda_graph import ShapeGraphs
from patchenv.model.stacked import StackedViT
from patchenv.model.stacked_adam import StackedAdam
from patchenv.population.training import stacked_update


class PopulationGraphs(ShapeGraphs):
    def __init__(self, stacked: StackedViT, adam: StackedAdam, autocast: Callable[[], AbstractContextManager],
                 max_graphs: int = 16):
        super().__init__(stacked.flat.device, autocast, max_graphs)
        self.stacked, self.adam = stacked, adam

    @staticmethod
    def key(index: Optional[torch.Tensor], key_mask: Optional[torch.Tensor]) -> tuple:
        """The graph a token selection replays."""
        return ("all",) if index is None else ("index",) + tuple(index.shape) + (key_mask is not None,)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, index: Optional[torch.Tensor],
                 key_mask: Optional[torch.Tensor], training: torch.Tensor) -> Optional[tuple]:
        """The step on images `x` (E, B, C, H, W) and labels `y` (E, B): `stacked_update`'s
        outputs from a graph, or None when the caller must run it eagerly."""
        return self.replay(self.key(index, key_mask),
                           {"x": x, "y": y, "index": index, "key_mask": key_mask, "training": training})

    def _update(self, static: dict, training: torch.Tensor) -> tuple:
        weights = self.stacked.weights()
        with self.autocast():
            tokens = self.stacked.embed(weights, static["x"])
        return stacked_update(self.stacked, self.adam, weights, tokens, static["y"], static["index"],
                              static["key_mask"], training, self.autocast)

    def _warm_up(self, static: dict) -> None:
        # The step itself with no run training: the update writes back what was there.
        self._update(static, torch.zeros_like(static["training"]))
        self.adam.zero_grad()

    def _record(self, graph: torch.cuda.CUDAGraph, static: dict) -> tuple:
        self.adam.zero_grad()  # the backward allocates the gradient in the graph's pool
        with torch.cuda.graph(graph):
            return self._update(static, static["training"])

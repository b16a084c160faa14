"""The bare masked training step every env timing is held against (throughput,
device_report): embed, forward on the kept tokens of one shared mask (an index tensor),
cross-entropy, backward and the env's own optimiser, on a fixed random batch, with no
env around it. ``mode``: "eager", "compile" (``forward_selected`` compiled as the env
compiles it, so the two share inductor's cache), "graph" (the whole step replayed from
the env's CUDA graphs, `patchenv.model.cuda_graph`) or "compile-forward" (the whole
forward from the images compiled, the kept patches' gather and embedding included: what
compiling can take off a step at most, short of compiling the optimiser).

``embed``: "all" embeds every patch and then selects (the patch observations' step);
"kept" embeds the kept patches only (`SimpleViT.embed_kept`), the step of an env whose
observation does not read the embedding (the count action with the progress
observation), which is the floor that step is held to."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from patchenv.model.cuda_graph import GraphedStep
from patchenv.model.training import autocast as model_autocast
from patchenv.model.training import make_optimizer, new_model
from patchenv.model.vit import select_tokens

MODES = ("eager", "compile", "graph", "compile-forward")
EMBEDS = ("all", "kept")


def autocast(device: torch.device, precision: str, cache_enabled: bool = True):
    """The env's autocast (`patchenv.model.training.autocast`) for precision "bf16" or "fp32"."""
    return model_autocast(device, "bf16" if precision == "bf16" else None, cache_enabled)


class BareStep:
    def __init__(self, vit: dict, batch_size: int, device: torch.device, mode: str = "eager", seed: int = 0,
                 embed: str = "all"):
        """`vit`: SimpleViT's keyword arguments (image_size, patch_size, num_classes,
        channels, dim, depth, heads, dim_head, mlp_dim)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if embed not in EMBEDS:
            raise ValueError(f"embed must be one of {EMBEDS}, got {embed!r}")
        if mode == "compile-forward" and embed != "kept":
            raise ValueError("mode='compile-forward' compiles the forward from the images: it needs embed='kept'")
        self.model = new_model(vit, device, seed)  # the env's model and optimiser, built the env's way
        self.model.train()
        self.optimizer = make_optimizer(self.model, 1e-3, capturable=mode == "graph")
        self.forward_selected = (torch.compile(self.model.forward_selected, dynamic=True) if mode == "compile"
                                 else self.model.forward_selected)
        self.forward = torch.compile(self.model.forward, dynamic=True) if mode == "compile-forward" else None
        self.vit, self.device, self.mode, self.embed = vit, device, mode, embed
        self.num_patches = self.model.num_patches
        self.set_batch(batch_size, seed)

    def set_batch(self, batch_size: int, seed: int) -> None:
        g = torch.Generator(self.device).manual_seed(seed)
        side = self.vit["image_size"]
        self.x = torch.randn(batch_size, self.vit.get("channels", 3), side, side, device=self.device, generator=g)
        self.y = torch.randint(self.vit["num_classes"], (batch_size,), device=self.device, generator=g)
        self.graphed = {}  # precision -> GraphedStep (the env's CUDA-graph step), per batch size

    def keep(self, mask: np.ndarray) -> Optional[torch.Tensor]:
        """The index tensor of a (N,) mask, or the (B, K) one of a (B, N) mask keeping K
        patches of every image, on the device (None: every patch, as the env passes)."""
        if mask.all():
            return None
        if mask.ndim == 2:
            counts = mask.sum(axis=1)
            if (counts != counts[0]).any():
                raise ValueError("a per-image mask must keep the same count in every row")
            return torch.from_numpy(np.nonzero(mask)[1].reshape(len(mask), -1)).to(self.device)
        return torch.from_numpy(np.flatnonzero(mask)).to(self.device)

    def __call__(self, keep: Optional[torch.Tensor], precision: str = "fp32") -> None:
        if self.mode == "graph":
            if precision not in self.graphed:
                self.graphed[precision] = GraphedStep(self.model, self.optimizer, self.device,
                                                      lambda: autocast(self.device, precision, cache_enabled=False))
            if self.graphed[precision](self.x, self.y, keep) is not None:
                return  # replayed (a shape's first call runs eagerly below, as in the env)
        with autocast(self.device, precision):
            if self.forward is not None:
                logits = self.forward(self.x, keep)
            elif self.embed == "kept":
                logits = self.forward_selected(*self.model.embed_kept(self.x, keep))
            else:
                logits = self.forward_selected(*select_tokens(self.model.embed(self.x), keep))
            loss = F.cross_entropy(logits.float(), self.y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

"""E SimpleViTs as one model: the weights of every run stacked along a leading dimension.

A population of training runs (`patchenv.population`) steps all its ViTs with one
forward, one backward and one update, instead of E small ones: on a GPU a small ViT's
step is bound by kernel launches, not arithmetic, so E runs cost about what one does.

The weights of all runs live in one flat leaf tensor ``flat`` of shape (E, P), row i
holding run i's parameters in `SimpleViT.named_parameters()` order. The forward splits it
into per-parameter views with leading dimension E (``torch.split`` along dim 1, whose
backward is one concatenation), and every layer is its batched form:

- Linear: ``baddbmm`` over E (each run multiplies by its own weight);
- LayerNorm: normalisation without affine, then each run's scale and shift;
- attention: has no weights, so the E runs fold into the batch (E * B sequences) of one
  ``scaled_dot_product_attention`` call, with a key mask where runs keep unequal counts.

The loss of the population is the sum of the runs' mean losses, so each run's gradient
is exactly its own (nothing is shared between rows), and the Adam update (`StackedAdam`)
is elementwise over (E, P) with a step count per run.

`SimpleViT`s whose parameters alias row i (`member_model`) let the single-run code
(evaluation, the probe, checkpoints, rendering) read run i without copying it.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from einops import rearrange

from patchenv.model.flat_buffer import flat_views
from patchenv.model.vit import SimpleViT


class StackedViT:
    """The weights of E SimpleViTs of one configuration, and their batched forward."""

    def __init__(self, vit_config: dict, num_runs: int, device: torch.device):
        template = SimpleViT(**vit_config)
        self.vit_config = dict(vit_config)
        self.num_runs = num_runs
        self.heads = template.transformer.layers[0][0].heads
        self.depth = len(template.transformer.layers)
        self.patch_size = template.patch_size
        self.names = [name for name, _ in template.named_parameters()]
        self.shapes = [tuple(p.shape) for _, p in template.named_parameters()]
        self.sizes = [p.numel() for _, p in template.named_parameters()]
        self.flat = torch.zeros(num_runs, sum(self.sizes), device=device, requires_grad=True)
        self.pos_embedding = template.pos_embedding.to(device)

    # -- one run's weights ------------------------------------------------------------
    def load_run(self, i: int, model: SimpleViT) -> None:
        """Copy `model`'s weights into row i."""
        params = dict(model.named_parameters())
        with torch.no_grad():
            self.flat[i].copy_(torch.cat([params[name].detach().reshape(-1) for name in self.names]))

    def member_model(self, i: int) -> SimpleViT:
        """A SimpleViT whose parameters are views of row i: it always holds run i's current
        weights (no copy) and trains nothing itself (no gradients)."""
        with torch.random.fork_rng(devices=[]):
            model = SimpleViT(**self.vit_config)
        model = model.to(self.flat.device)
        for name, view in zip(self.names, flat_views(self.flat.data[i], self.shapes)):
            module_name, _, attr = name.rpartition(".")
            setattr(model.get_submodule(module_name), attr, torch.nn.Parameter(view, requires_grad=False))
        return model

    # -- the batched forward ----------------------------------------------------------
    def weights(self) -> dict[str, torch.Tensor]:
        """Per-parameter views (E, *shape) of ``flat``, with autograd through it."""
        chunks = self.flat.split(self.sizes, dim=1)
        return {name: c.view(self.num_runs, *shape) for name, c, shape in zip(self.names, chunks, self.shapes)}

    def embed(self, w: dict, img: torch.Tensor) -> torch.Tensor:
        """Patch embeddings plus position embedding: (E, B, C, H, W) -> (E, B, N, D)."""
        p = self.patch_size
        x = rearrange(img, "e b c (h p1) (w p2) -> e b (h w) (p1 p2 c)", p1=p, p2=p)
        x = _layer_norm(x, w["to_patch_embedding.0.weight"], w["to_patch_embedding.0.bias"])
        x = _linear(x, w["to_patch_embedding.1.weight"], w["to_patch_embedding.1.bias"])
        x = _layer_norm(x, w["to_patch_embedding.2.weight"], w["to_patch_embedding.2.bias"])
        return x + self.pos_embedding.to(x.dtype)

    def forward_tokens(self, w: dict, tokens: torch.Tensor, index: Optional[torch.Tensor] = None,
                       key_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Transformer and head on tokens (E, B, N, D), each image keeping the tokens
        `index` (E, B, L) names (None: all N); `key_mask` (E, B, L) marks real tokens where
        rows are padded (None: none is). Returns logits (E, B, classes)."""
        e, b, n, d = tokens.shape
        if index is not None:
            tokens = torch.gather(tokens, 2, index.unsqueeze(-1).expand(*index.shape, d))
        x = tokens
        attn_mask = None if key_mask is None else key_mask.reshape(e * b, 1, 1, -1)
        for layer in range(self.depth):
            pre = f"transformer.layers.{layer}"
            x = self._attention(w, pre + ".0", x, attn_mask) + x
            h = _layer_norm(x, w[pre + ".1.net.0.weight"], w[pre + ".1.net.0.bias"])
            h = F.gelu(_linear(h, w[pre + ".1.net.1.weight"], w[pre + ".1.net.1.bias"]))
            x = _linear(h, w[pre + ".1.net.3.weight"], w[pre + ".1.net.3.bias"]) + x
        if key_mask is None:
            pooled = x.mean(dim=2)
        else:  # mean over real tokens only
            m = key_mask.to(x.dtype).unsqueeze(-1)
            pooled = (x * m).sum(dim=2) / m.sum(dim=2)
        pooled = _layer_norm(pooled, w["linear_head.0.weight"], w["linear_head.0.bias"])
        return _linear(pooled, w["linear_head.1.weight"], w["linear_head.1.bias"])

    def _attention(self, w: dict, pre: str, x: torch.Tensor, attn_mask: Optional[torch.Tensor]) -> torch.Tensor:
        e, b, length, _ = x.shape
        x = _layer_norm(x, w[pre + ".norm.weight"], w[pre + ".norm.bias"])
        q, k, v = _linear(x, w[pre + ".to_qkv.weight"]).chunk(3, dim=-1)
        # The runs fold into the batch: attention has no weights of its own.
        q, k, v = (rearrange(t, "e b l (h d) -> (e b) h l d", h=self.heads) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        out = rearrange(out, "(e b) h l d -> e b l (h d)", e=e)
        return _linear(out, w[pre + ".to_out.weight"])

    def attention_state(self, w: dict, tokens: torch.Tensor) -> torch.Tensor:
        """`SimpleViT.attention_state` of every run: (E, B, N, D) -> (E, B, N), by the same
        shortcut (values reduced to one number per token and head)."""
        pre = "transformer.layers.0.0"
        w_qkv, w_out = w[pre + ".to_qkv.weight"], w[pre + ".to_out.weight"]  # (E, 3I, D), (E, D, I)
        inner = w_out.shape[-1]
        h = self.heads
        dh = inner // h
        w_mean = w_out.mean(dim=1)  # (E, I)
        u = torch.einsum("ehjd,ehj->edh", w_qkv[:, 2 * inner:].reshape(-1, h, dh, w_qkv.shape[-1]),
                         w_mean.view(-1, h, dh))  # (E, D, heads)
        x = _layer_norm(tokens, w[pre + ".norm.weight"], w[pre + ".norm.bias"])
        q, k = rearrange(_linear(x, w_qkv[:, :2 * inner]), "e b n (two h j) -> two e b h n j", two=2, h=h)
        v = torch.einsum("ebnd,edh->ebhn", x, u).unsqueeze(-1)
        scores = (q @ k.transpose(-1, -2)) * dh**-0.5  # (E, B, h, N, N)
        return (scores.softmax(dim=-1) @ v).sum(dim=2).squeeze(-1)  # (E, B, N)


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Each run's Linear: x (E, ..., in) with weight (E, out, in) and bias (E, out)."""
    e, shape = x.shape[0], x.shape[1:-1]
    x2 = x.reshape(e, -1, x.shape[-1])
    wt = weight.transpose(1, 2).to(x.dtype)
    y = torch.bmm(x2, wt) if bias is None else torch.baddbmm(bias.to(x.dtype).unsqueeze(1), x2, wt)
    return y.view(e, *shape, weight.shape[1])


def _layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Each run's LayerNorm over the last dimension (eps 1e-5, as nn.LayerNorm)."""
    view = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
    y = F.layer_norm(x, (x.shape[-1],), eps=1e-5)
    return y * weight.view(view).to(y.dtype) + bias.view(view).to(y.dtype)

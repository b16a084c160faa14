"""SimpleViT (Beyer et al. 2022, as in lucidrains/vit-pytorch) with real patch dropping.

The AgentViT paper trains this model on CIFAR-10 (32x32 images, 4x4 patches, N = 64
tokens), in the version its notebook uses (docs/AGENTVIT.md): the transformer ends without a
LayerNorm, and the head is mean over tokens -> LayerNorm(dim) -> Linear(dim -> classes).
(Newer vit-pytorch versions put a LayerNorm on every token at the end of the transformer,
then pool: the same parameter count, different logits.) Dropped patches are *removed from the token sequence* before the transformer
(a gather), never zeroed, so a step that keeps k of N patches really does ~k/N of the work.

Two ways in: ``forward(img, keep)`` cuts the image into patches, keeps the chosen ones
and embeds only those (what a training step whose observation does not read the
embedding pays for: at 5 of 64 patches, embedding all of them was about a quarter of
the tiny ViT's env step at batch 64 on the CPU); ``forward_tokens(embed(img), keep)`` embeds every patch first,
for callers that also read the whole embedding (the env's patch observations). Both give
the same logits.

Masks given to `forward(img, keep)`:
- None: every patch.
- (N,) bool, or a 1-D index tensor: one mask shared by the whole batch (the paper).
- (B, N) bool, or a (B, K) index tensor: one mask per image. When the images keep
  different numbers of patches, each row is padded to the batch's largest count and the
  padding is hidden from attention with a key mask and left out of the mean pool, so the
  logits equal those of each image run alone with its own mask.
- a `PaddedKeep`: such rows padded on the host already (the env's), so the device's
  counts need not be read to know the padded length.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class PaddedKeep(NamedTuple):
    """Per-image rows of unequal counts, padded on the host to the largest count L: each
    row's kept patches first, in patch order, then dropped ones as filler (the order a
    stable sort of the (B, N) mask puts them in); `key_mask` marks the real slots."""

    index: torch.Tensor  # (B, L) long
    key_mask: torch.Tensor  # (B, L) bool


def posemb_sincos_2d(h: int, w: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding, (h*w, dim), row-major over the patch grid."""
    if dim % 4 != 0:
        raise ValueError(f"dim must be a multiple of 4 for the 2-D sin-cos embedding, got {dim}")
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    omega = torch.arange(dim // 4) / max(dim // 4 - 1, 1)
    omega = 1.0 / (temperature**omega)
    y = y.flatten()[:, None] * omega[None, :]
    x = x.flatten()[:, None] * omega[None, :]
    return torch.cat((x.sin(), x.cos(), y.sin(), y.cos()), dim=1).float()


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, dim)
        )

    def forward(self, x):
        return self.net(x)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x, key_mask=None):
        # x: (B, L, D); key_mask: (B, L) bool, True = a real token, or None.
        # Plain view/transpose, not einops: a small ViT's step is bound by per-op overhead,
        # and einops' parsing cost ~30 us a call on the CPU (same tensors either way).
        b, length, _ = x.shape
        x = self.norm(x)
        q, k, v = (t.view(b, length, self.heads, -1).transpose(1, 2) for t in self.to_qkv(x).chunk(3, dim=-1))
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, L)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, h, L, d)
        return self.to_out(out.transpose(1, 2).reshape(b, length, -1))


class Transformer(nn.Module):
    """Pre-norm blocks, x = attn(x) + x, x = ff(x) + x; no final LayerNorm (the notebook's:
    the head normalises the pooled token instead)."""

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList([Attention(dim, heads, dim_head), FeedForward(dim, mlp_dim)]) for _ in range(depth)
        )

    def forward(self, x, key_mask=None):
        for attn, ff in self.layers:
            x = attn(x, key_mask) + x
            x = ff(x) + x
        return x


class SimpleViT(nn.Module):
    def __init__(
        self,
        *,
        image_size: int,
        patch_size: int,
        num_classes: int,
        dim: int,
        depth: int,
        heads: int,
        mlp_dim: int,
        channels: int = 3,
        dim_head: int = 64,
    ):
        super().__init__()
        if image_size % patch_size != 0:
            raise ValueError(f"image_size {image_size} must be divisible by patch_size {patch_size}")
        self.grid = image_size // patch_size
        self.num_patches = self.grid**2
        self.patch_size = patch_size
        patch_dim = channels * patch_size * patch_size
        self.to_patch_embedding = nn.Sequential(
            nn.LayerNorm(patch_dim), nn.Linear(patch_dim, dim), nn.LayerNorm(dim)
        )
        self.register_buffer("pos_embedding", posemb_sincos_2d(self.grid, self.grid, dim), persistent=False)
        self.register_buffer("patch_pixels", patch_pixel_offsets(channels, image_size, patch_size), persistent=False)
        self.transformer = Transformer(dim, depth, heads, dim_head, mlp_dim)
        # The notebook's head (vit-pytorch's older SimpleViT): LayerNorm of the token mean, then Linear.
        self.linear_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))

    # -- pieces the environment uses ------------------------------------------------
    def patchify(self, img: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, N, P) pixel patches, row-major over the grid, each patch
        flattened as (p1 p2 c) (vit-pytorch's order)."""
        b, c = img.shape[:2]
        g, p = self.grid, self.patch_size
        x = img.reshape(b, c, g, p, g, p).permute(0, 2, 4, 3, 5, 1)  # b h w p1 p2 c
        return x.reshape(b, g * g, p * p * c)

    def embed(self, img: torch.Tensor) -> torch.Tensor:
        """Patch embeddings plus position embedding: (B, C, H, W) -> (B, N, D)."""
        x = self.patchify(img)
        return self.to_patch_embedding(x) + self.pos_embedding.to(x.dtype)

    def embed_kept(self, img: torch.Tensor, keep=None):
        """The embeddings of the kept patches only: (tokens (B, K, D), key_mask) as
        `select_tokens(self.embed(img), keep)` returns them, without embedding the dropped
        patches (the embedding is per patch, so the kept rows are the same numbers)."""
        key_mask = None
        if isinstance(keep, PaddedKeep):
            keep, key_mask = keep
        keep = None if keep is None else torch.as_tensor(keep, device=img.device)
        if keep is None or keep.dtype == torch.bool:
            patches, key_mask = select_tokens(self.patchify(img), keep)
            pos, _ = select_tokens(self.pos_embedding.to(patches.dtype).expand(len(img), -1, -1), keep)
            return self.to_patch_embedding(patches) + pos, key_mask
        # Index keeps (a shared (K,) or per-image (B, K), the env's count and equal-count
        # masks): copy out the kept patches' pixels alone, not the whole patchified batch,
        # with one gather of their offsets in the flattened image (about 3x faster on the
        # CPU than advanced indexing of the patch grid, and the same pixels).
        keep = keep.long()
        b = img.shape[0]
        flat = img.reshape(b, -1)
        if keep.dim() == 1:
            patches = flat.index_select(1, self.patch_pixels[keep].view(-1))
        elif keep.dim() == 2 and keep.shape[0] == b:
            patches = flat.gather(1, self.patch_pixels[keep].view(b, -1))
        else:
            raise ValueError(f"index keep must have shape (K,) or ({b}, K), got {tuple(keep.shape)}")
        patches = patches.view(b, keep.shape[-1], self.patch_pixels.shape[1])
        return self.to_patch_embedding(patches) + self.pos_embedding.to(patches.dtype)[keep], key_mask

    def attention_state(self, tokens: torch.Tensor) -> torch.Tensor:
        """The paper's state: first block's attention (LN -> attention -> output
        projection, no residual) over all N tokens, averaged over D: (B, N, D) -> (B, N).

        Computed without materialising the values or the output projection: the mean over
        D of ``to_out(z)`` is ``z @ w`` with ``w = W_out.mean(0)``, and for each head
        ``(A_h V_h) w_h = A_h (LN(x) W_v,h^T w_h)``, so each head's values shrink to one
        number per token. Same result as ``attn(tokens).mean(-1)`` with the first block's
        attention module, less than half its cost (only Q and K are projected at full width)."""
        attn = self.transformer.layers[0][0]
        h = attn.heads
        inner = attn.to_out.in_features
        dh = inner // h
        w_qk, w_v = attn.to_qkv.weight[: 2 * inner], attn.to_qkv.weight[2 * inner:]  # (2*inner, D), (inner, D)
        w_mean = attn.to_out.weight.mean(dim=0)  # (inner,)
        u = torch.einsum("hed,he->dh", w_v.view(h, dh, -1), w_mean.view(h, dh))  # (D, heads)
        x = attn.norm(tokens)
        q, k = rearrange(x @ w_qk.t(), "b n (two h e) -> two b h n e", two=2, h=h)
        v = rearrange(x @ u, "b n h -> b h n 1")
        # Plain softmax attention: SDPA's kernels want value width == head width and fall
        # back to a slower path for width-1 values.
        scores = (q @ k.transpose(-1, -2)) * dh**-0.5  # (B, h, N, N)
        return (scores.softmax(dim=-1) @ v).sum(dim=1).squeeze(-1)  # (B, N)

    def forward_tokens(self, tokens: torch.Tensor, keep=None) -> torch.Tensor:
        """Run the transformer and head on embedded tokens (B, N, D), keeping only `keep`:
        mean over the kept tokens -> LayerNorm -> Linear, (B, classes)."""
        return self.forward_selected(*select_tokens(tokens, keep))

    def forward_selected(self, tokens: torch.Tensor, key_mask=None) -> torch.Tensor:
        """The transformer and head on the tokens already selected, (B, K, D), with the key
        mask of padded rows (`select_tokens`'s pair), (B, classes)."""
        x = self.transformer(tokens, key_mask)  # (B, K, D)
        if key_mask is None:
            pooled = x.mean(dim=1)
        else:  # mean over real tokens only; padding rows are garbage and must not count
            w = key_mask.to(x.dtype).unsqueeze(-1)
            pooled = (x * w).sum(dim=1) / w.sum(dim=1)
        return self.linear_head(pooled)  # (B, D) -> LayerNorm -> (B, classes)

    def forward(self, img: torch.Tensor, keep=None) -> torch.Tensor:
        """Logits of `img` (B, C, H, W) seeing only the kept patches, which alone are embedded."""
        return self.forward_selected(*self.embed_kept(img, keep))


def patch_pixel_offsets(channels: int, image_size: int, patch_size: int) -> torch.Tensor:
    """(N, P) long: for each patch, the offsets of its pixels in a flattened (C, H, W) image,
    in `SimpleViT.patchify`'s order (row-major over the grid, each patch as (p1 p2 c))."""
    g, p = image_size // patch_size, patch_size
    offsets = torch.arange(channels * image_size * image_size).view(channels, g, p, g, p)
    return offsets.permute(1, 3, 2, 4, 0).reshape(g * g, p * p * channels)


def select_tokens(tokens: torch.Tensor, keep):
    """Remove dropped tokens. Returns (tokens (B, K, D), key_mask (B, K) bool or None).

    `keep` as in the module docstring. A per-image mask whose rows keep equal counts needs
    no padding and so no key mask (the fast path: same cost as one shared mask).
    """
    if keep is None:
        return tokens, None
    b, n, d = tokens.shape
    if isinstance(keep, PaddedKeep):
        return torch.gather(tokens, 1, keep.index.unsqueeze(-1).expand(b, keep.index.shape[1], d)), keep.key_mask
    keep = torch.as_tensor(keep, device=tokens.device)
    if keep.dtype == torch.bool:
        if keep.shape[-1] != n or keep.dim() not in (1, 2) or (keep.dim() == 2 and keep.shape[0] != b):
            raise ValueError(f"bool keep mask must have shape ({n},) or ({b}, {n}), got {tuple(keep.shape)}")
        if keep.dim() == 1:
            if bool(keep.all()):  # note: host sync; free when the mask came from numpy
                return tokens, None
            return tokens[:, keep.nonzero().squeeze(1)], None
        counts = keep.sum(dim=1)
        k_max = int(counts.max())  # note: CPU-GPU sync point (the sequence length is data dependent)
        # Stable sort puts each row's kept indices first, in patch order.
        idx = torch.sort((~keep).to(torch.uint8), dim=1, stable=True).indices[:, :k_max]
        key_mask = None if bool((counts == k_max).all()) else torch.arange(k_max, device=keep.device) < counts[:, None]
        if k_max == n and key_mask is None:
            return tokens, None
        return torch.gather(tokens, 1, idx.unsqueeze(-1).expand(b, k_max, d)), key_mask
    # integer indices
    keep = keep.long()
    if keep.dim() == 1:
        return tokens[:, keep], None
    if keep.dim() == 2 and keep.shape[0] == b:
        return torch.gather(tokens, 1, keep.unsqueeze(-1).expand(b, keep.shape[1], d)), None
    raise ValueError(f"index keep must have shape (K,) or ({b}, K), got {tuple(keep.shape)}")


def place_tokens(values: torch.Tensor, keep, n: int) -> torch.Tensor:
    """The inverse of `select_tokens` for one number per token: `values` (B, K), in the
    order `select_tokens` put the kept tokens (padding slots ignored), back at their patch
    positions of a (B, N) zero tensor."""
    b = values.shape[0]
    if keep is None:
        return values
    out = values.new_zeros(b, n)
    if isinstance(keep, PaddedKeep):  # the filler slots name dropped patches: they get 0
        return out.scatter_(1, keep.index, torch.where(keep.key_mask, values, 0.0))
    keep = torch.as_tensor(keep, device=values.device)
    if keep.dim() == 1:  # one mask or index for the batch
        out[:, keep if keep.dtype == torch.bool else keep.long()] = values
    elif keep.dtype == torch.bool:  # rows in patch order, padded to the largest count: real slots first
        real = torch.arange(values.shape[1], device=values.device) < keep.sum(dim=1)[:, None]
        out[keep] = values[real]
    else:
        out.scatter_(1, keep.long(), values)
    return out


@torch.no_grad()
def init_weights(model: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default initialisation, drawn from `generator` so that a seeded env never
    touches the global torch RNG: Linear weights and biases ~ U(-1/sqrt(fan_in), +),
    which is what kaiming_uniform(a=sqrt(5)) amounts to; LayerNorm ones and zeros."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.in_features)
            m.weight.copy_(torch.rand(m.weight.shape, generator=generator, device=generator.device) * 2 * bound - bound)
            if m.bias is not None:
                m.bias.copy_(torch.rand(m.bias.shape, generator=generator, device=generator.device) * 2 * bound - bound)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

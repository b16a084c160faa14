"""FLOPs of one SimpleViT training step, from the shapes alone (no device work).

`step_flops(vit_config, batch_size, seq_len)` counts the forward and backward FLOPs of
one training step of `patchenv.model.vit.SimpleViT` (``forward_tokens(embed(x), keep)``, the
cross-entropy loss, ``backward()``) on a batch of B images whose transformer ran on a
(B, K) token sequence. K is the sequence length the transformer really processed: the
patches kept (a shared mask, or per-image masks with equal counts), or, for per-image
masks of unequal counts, the largest count, since `select_tokens` pads every row to it
(the padding is computed, then hidden).

What is counted, like ``torch.utils.flop_counter.FlopCounterMode``: matrix products only,
a multiply-add = 2 FLOPs (an (m, k) @ (k, n) product = 2mkn). Layer norms, softmax,
GELU, residual adds, biases, the position embedding, the mean pool, gathers and the loss
are elementwise or reductions and are not counted. With D = dim, P = channels *
patch_size^2, N = patches per image, I = heads * dim_head, M = mlp_dim, C = classes:

- embed: Linear(P -> D) on the B*E patches embedded, 2*B*E*P*D: E = N when the step
  reuses the embedding of every patch that its observation read, E = K when it embedded
  the kept patches only (``SimpleViT.forward``; the env with ``obs_type="progress"``);
- per block, attention: the qkv projection 2*B*K*D*3I, the scores Q K^T 2*B*K*K*I (heads
  * dim_head = I, summed over heads), the weighted values A V 2*B*K*K*I, the output
  projection 2*B*K*I*D;
- per block, MLP: Linear(D -> M) and Linear(M -> D), 2 * 2*B*K*D*M;
- head: Linear(D -> C) on the pooled token, 2*B*D*C.

Backward = 2 x forward: every product's input gradient and weight gradient (or, for
Q K^T and A V, the gradients of both operands) cost one product each. That holds for the
patch embedding too: its input, the LayerNorm of the patches, carries a learnt weight,
so its gradient is computed. FlopCounterMode counts exactly this; the tests check it
(tests/model/test_flops.py). It has no formula for the fused CPU attention kernel
(``_scaled_dot_product_flash_attention_for_cpu``, torch 2.x) and counts nothing for it,
so the tests run attention on SDPA's math backend (two batched products, counted), and
check separately that on the default backend it misses exactly the Q K^T and A V parts.
The fused CUDA kernels (flash, memory-efficient) recompute Q K^T in their backward;
FlopCounterMode counts them so (5 products: 2.5x the forward's Q K^T and A V), which is
more than here by half of those two products' forward FLOPs. This module counts the
model's arithmetic, the same on every backend and device, not a kernel's recomputation.
"""
from __future__ import annotations

from typing import Optional

PARTS = ("embed", "attention", "mlp", "head")


def step_flops(vit_config: dict, batch_size: int, seq_len: int, embedded: Optional[int] = None) -> dict[str, int]:
    """FLOPs of one training step (module docstring): the forward FLOPs of each part
    (``embed``, ``attention``, ``mlp``, ``head``; attention and mlp summed over the
    blocks), ``forward`` (their sum), ``backward`` (2 x forward) and ``total``.

    `vit_config`: the `SimpleViT` keyword arguments (``env.vit_config``); `batch_size`: B;
    `seq_len`: K, the tokens per image the transformer ran on (padding included);
    `embedded`: the patches per image embedded, E (None: all N)."""
    b, k = int(batch_size), int(seq_len)
    n = (vit_config["image_size"] // vit_config["patch_size"]) ** 2
    if b < 1 or not 1 <= k <= n:
        raise ValueError(f"need batch_size >= 1 and seq_len in [1, {n}], got {batch_size} and {seq_len}")
    e = n if embedded is None else int(embedded)
    if not 1 <= e <= n:
        raise ValueError(f"need embedded in [1, {n}] patches per image, got {embedded}")
    d, m, c = vit_config["dim"], vit_config["mlp_dim"], vit_config["num_classes"]
    p = vit_config.get("channels", 3) * vit_config["patch_size"] ** 2
    inner = vit_config["heads"] * vit_config.get("dim_head", 64)
    depth = vit_config["depth"]
    forward = {
        "embed": 2 * b * e * p * d,
        "attention": depth * (2 * b * k * d * 3 * inner + 2 * 2 * b * k * k * inner + 2 * b * k * inner * d),
        "mlp": depth * 2 * 2 * b * k * d * m,
        "head": 2 * b * d * c,
    }
    fwd = sum(forward.values())
    return {**forward, "forward": fwd, "backward": 2 * fwd, "total": 3 * fwd}

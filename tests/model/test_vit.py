"""SimpleViT: the notebook's forward pass by hand, patch dropping against a plain reference,
mask forms, the paper's size and state."""
import math

import pytest
import torch
import torch.nn.functional as F

from patchenv.model.vit import (PaddedKeep, SimpleViT, init_weights, patch_pixel_offsets, place_tokens,
                                 posemb_sincos_2d, select_tokens)

N = 64  # 32x32 images, 4x4 patches


def tiny_vit(seed=0, **overrides):
    cfg = dict(image_size=32, patch_size=4, num_classes=10, dim=32, depth=2, heads=2, dim_head=16, mlp_dim=64)
    cfg.update(overrides)
    model = SimpleViT(**cfg)
    init_weights(model, torch.Generator().manual_seed(seed))
    # The default init leaves LayerNorm at (1, 0); perturb them so a LayerNorm mix-up shows.
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed + 1)
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.add_(0.3 * torch.randn(m.weight.shape, generator=g))
                m.bias.add_(0.3 * torch.randn(m.bias.shape, generator=g))
    return model.eval()


def images(b, seed=0):
    return torch.randn(b, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def random_mask(b, counts, seed=0):
    """(B, N) bool mask keeping counts[i] random patches in row i."""
    g = torch.Generator().manual_seed(seed)
    keep = torch.zeros(b, N, dtype=torch.bool)
    for i, k in enumerate(counts):
        keep[i, torch.randperm(N, generator=g)[:k]] = True
    return keep


# -- a plain reference: tokens physically sliced per image, attention by hand --------------
def _layer_norm(ln, x):
    return (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + ln.eps) * ln.weight \
        + ln.bias


def _attention_by_hand(attn, x):
    """LN -> qkv -> softmax(q k^T / sqrt(d)) v per head -> output projection; x is (L, D)."""
    h = attn.heads
    inner = attn.to_out.in_features
    dh = inner // h
    q, k, v = (_layer_norm(attn.norm, x) @ attn.to_qkv.weight.t()).split(inner, dim=-1)
    out = []
    for j in range(h):
        qh, kh, vh = (t[:, j * dh:(j + 1) * dh] for t in (q, k, v))
        weights = torch.exp(qh @ kh.t() / math.sqrt(dh))
        out.append((weights / weights.sum(-1, keepdim=True)) @ vh)
    return torch.cat(out, dim=-1) @ attn.to_out.weight.t()


@torch.no_grad()
def reference_logits(model, img, kept_indices):
    """Logits image by image, each keeping `kept_indices[i]` (a list of patch indices)."""
    tokens = model.embed(img)
    logits = []
    for i, idx in enumerate(kept_indices):
        x = tokens[i, torch.as_tensor(idx, dtype=torch.long)]  # (K_i, D): dropped tokens gone
        for attn, ff in model.transformer.layers:
            x = _attention_by_hand(attn, x) + x
            ln, lin1, _, lin2 = ff.net
            x = F.gelu(_layer_norm(ln, x) @ lin1.weight.t() + lin1.bias) @ lin2.weight.t() + lin2.bias + x
        head_ln, head = model.linear_head  # the notebook's head: mean -> LayerNorm -> Linear
        logits.append(_layer_norm(head_ln, x.mean(0)) @ head.weight.t() + head.bias)
    return torch.stack(logits)


@torch.no_grad()
def notebook_logits(model, img):
    """The notebook's SimpleViT forward pass on all patches, with plain torch ops on the
    module's own parameters: patches cut by slicing, LN -> Linear -> LN, + sin-cos,
    `depth` pre-norm blocks with no final LayerNorm, mean over tokens -> LN -> Linear."""
    b = img.shape[0]
    params = dict(model.named_parameters())

    def ln(x, name):
        return F.layer_norm(x, x.shape[-1:], params[f"{name}.weight"], params[f"{name}.bias"])

    patches = torch.stack([img[:, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4].permute(0, 2, 3, 1).reshape(b, 48)
                           for r in range(8) for c in range(8)], dim=1)  # (B, N, 48), (p1 p2 c) order
    x = ln(ln(patches, "to_patch_embedding.0") @ params["to_patch_embedding.1.weight"].t()
           + params["to_patch_embedding.1.bias"], "to_patch_embedding.2")
    x = x + posemb_sincos_2d(8, 8, x.shape[-1])
    for i, (attn, _) in enumerate(model.transformer.layers):
        pre = f"transformer.layers.{i}"
        h, inner = attn.heads, attn.to_out.in_features
        q, k, v = (ln(x, f"{pre}.0.norm") @ params[f"{pre}.0.to_qkv.weight"].t()).split(inner, dim=-1)
        q, k, v = (t.reshape(b, -1, h, inner // h).transpose(1, 2) for t in (q, k, v))  # (B, h, N, dh)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(inner // h), dim=-1) @ v
        x = a.transpose(1, 2).reshape(b, -1, inner) @ params[f"{pre}.0.to_out.weight"].t() + x
        hidden = F.gelu(ln(x, f"{pre}.1.net.0") @ params[f"{pre}.1.net.1.weight"].t() + params[f"{pre}.1.net.1.bias"])
        x = hidden @ params[f"{pre}.1.net.3.weight"].t() + params[f"{pre}.1.net.3.bias"] + x
    pooled = ln(x.mean(dim=1), "linear_head.0")  # no LayerNorm on the tokens: on their mean
    return pooled @ params["linear_head.1.weight"].t() + params["linear_head.1.bias"]


def attention_state_reference(model, tokens):
    """The paper's state computed plainly: the first block's attention module on all
    tokens (LN -> attention -> output projection, no residual), averaged over D."""
    return model.transformer.layers[0][0](tokens).mean(dim=-1)


def forward_and_sequence(model, x, keep):
    """Logits, and the (B, K) sequence the transformer really ran on."""
    seen = []
    handle = model.transformer.register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape[:2])))
    try:
        out = model(x, keep)
    finally:
        handle.remove()
    return out, seen[0]


def rows(keep):
    return [torch.nonzero(r).squeeze(1).tolist() for r in keep]


@pytest.fixture
def model():
    return tiny_vit()


def test_forward_is_the_notebooks_by_hand(model):
    """The notebook's architecture, rebuilt from the parameters with plain ops, gives the
    module's logits (a final LayerNorm on every token before pooling would not)."""
    x = images(3, seed=11)
    torch.testing.assert_close(model(x), notebook_logits(model, x), atol=1e-5, rtol=1e-5)
    assert not any(name.startswith("transformer.norm") for name, _ in model.named_parameters())


def test_classifier_input_is_a_layer_norm_of_the_token_mean():
    """At initialisation (LayerNorm weight 1, bias 0) the classifier's input, seen from
    outside through a hook on the last Linear, has zero mean and unit variance per row,
    and equals the LayerNorm of the transformer's token mean."""
    model = SimpleViT(image_size=32, patch_size=4, num_classes=10, dim=32, depth=2, heads=2, dim_head=16, mlp_dim=64)
    init_weights(model, torch.Generator().manual_seed(3))
    classifier = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert classifier.out_features == 10
    seen = []
    classifier.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    x = images(4, seed=12)
    with torch.no_grad():
        model(x)
        tokens = model.transformer(model.embed(x))  # (B, N, D), no final LayerNorm
    (z,) = seen
    torch.testing.assert_close(z.mean(dim=1), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.var(dim=1, unbiased=False), torch.ones(4), atol=1e-3, rtol=0)
    mean = tokens.mean(dim=1)
    want = (mean - mean.mean(1, keepdim=True)) / torch.sqrt(mean.var(1, unbiased=False, keepdim=True) + 1e-5)
    torch.testing.assert_close(z, want, atol=1e-5, rtol=1e-5)
    # The tokens themselves are not normalised (that was the newer vit-pytorch head).
    assert tokens.var(dim=-1, unbiased=False).sub(1).abs().max() > 0.05


def test_reference_matches_unmasked_forward(model):
    # The reference itself, on all patches, agrees with the plain forward.
    x = images(3)
    torch.testing.assert_close(model(x), reference_logits(model, x, [list(range(N))] * 3), atol=1e-5, rtol=1e-5)


def test_shared_mask_gather_path_matches_reference(model):
    x = images(4)
    keep = random_mask(1, [20], seed=3)[0]  # (N,) bool
    out, sequence = forward_and_sequence(model, x, keep)
    assert sequence == (4, 20)
    torch.testing.assert_close(out, reference_logits(model, x, [keep.nonzero().squeeze(1).tolist()] * 4),
                               atol=1e-5, rtol=1e-5)


def test_equal_count_per_image_path_matches_reference(model):
    x = images(5, seed=1)
    keep = random_mask(5, [24] * 5, seed=4)  # different patches, same count: no padding
    out, sequence = forward_and_sequence(model, x, keep)
    assert sequence == (5, 24)
    torch.testing.assert_close(out, reference_logits(model, x, rows(keep)), atol=1e-5, rtol=1e-5)
    idx = torch.stack([torch.nonzero(r).squeeze(1) for r in keep])  # (B, K) index form
    torch.testing.assert_close(model(x, idx), out, atol=1e-6, rtol=1e-6)
    _, key_mask = select_tokens(model.embed(x), keep)
    assert key_mask is None


def test_uneven_per_image_masks_padded_path(model):
    """Different counts per image: padded to the largest count with a key mask, and the
    same logits as each image run alone with its own mask (and as the reference)."""
    counts = [1, 5, 30, 64, 17, 2]
    x = images(6, seed=2)
    keep = random_mask(6, counts, seed=5)
    out, sequence = forward_and_sequence(model, x, keep)
    assert sequence == (6, 64)
    alone = torch.cat([model(x[i:i + 1], keep[i]) for i in range(6)])
    torch.testing.assert_close(out, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out, reference_logits(model, x, rows(keep)), atol=1e-5, rtol=1e-5)
    # Without the full row the batch pads only to the largest remaining count.
    keep2 = random_mask(5, [1, 5, 30, 17, 2], seed=6)
    out2, sequence = forward_and_sequence(model, x[:5], keep2)
    assert sequence == (5, 30)
    torch.testing.assert_close(out2, reference_logits(model, x[:5], rows(keep2)), atol=1e-5, rtol=1e-5)


def test_padded_path_gradients_match_images_alone(model):
    """Padding must not leak into the gradients (the env trains through this path)."""
    x = images(4, seed=3)
    keep = random_mask(4, [3, 40, 9, 22], seed=7)
    y = torch.tensor([1, 2, 3, 4])
    model.zero_grad()
    F.cross_entropy(model(x, keep), y, reduction="sum").backward()
    batched = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    for i in range(4):
        F.cross_entropy(model(x[i:i + 1], keep[i]), y[i:i + 1], reduction="sum").backward()
    for g_batch, p in zip(batched, model.parameters()):
        assert torch.isfinite(g_batch).all()
        torch.testing.assert_close(g_batch, p.grad, atol=1e-5, rtol=1e-4)


def test_mask_forms_agree(model):
    """A bool (N,) mask, an index tensor and a (B, N) mask with equal rows: same logits."""
    x = images(3, seed=4)
    keep = random_mask(1, [33], seed=8)[0]
    by_bool = model(x, keep)
    by_index = model(x, keep.nonzero().squeeze(1))
    by_rows = model(x, keep.expand(3, N))
    by_index_rows = model(x, keep.nonzero().squeeze(1).expand(3, -1))
    for other in (by_index, by_rows, by_index_rows):
        torch.testing.assert_close(other, by_bool, atol=1e-6, rtol=1e-6)
    # Numpy and list masks are accepted too.
    torch.testing.assert_close(model(x, keep.numpy()), by_bool, atol=0, rtol=0)
    torch.testing.assert_close(model(x, keep.tolist()), by_bool, atol=0, rtol=0)


def test_keep_none_equals_all_true(model):
    x = images(3, seed=5)
    full, sequence = forward_and_sequence(model, x, None)
    assert sequence == (3, N)
    assert torch.equal(model(x, torch.ones(N, dtype=torch.bool)), full)
    assert torch.equal(model(x, torch.ones(3, N, dtype=torch.bool)), full)
    torch.testing.assert_close(model(x, torch.arange(N)), full, atol=0, rtol=0)


def test_dropped_tokens_are_removed_not_zeroed(model):
    seen = []
    model.transformer.register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape)))
    x = images(2, seed=6)
    keep = random_mask(1, [11], seed=9)[0]
    model(x, keep)
    assert seen == [(2, 11, 32)]
    # And the result does not depend on what the dropped patches contain.
    x2 = x.clone()
    for p in (~keep).nonzero().squeeze(1).tolist():
        r, c = divmod(p, 8)
        x2[:, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4] = 100.0
    torch.testing.assert_close(model(x2, keep), model(x, keep), atol=0, rtol=0)


def test_bad_keep_shapes_raise(model):
    x = images(2)
    with pytest.raises(ValueError, match=r"\(64,\)"):
        model(x, torch.ones(63, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(2, 64\)"):
        model(x, torch.ones(3, N, dtype=torch.bool))
    with pytest.raises(ValueError, match="index keep"):
        model(x, torch.zeros(3, 5, dtype=torch.long))


def test_embed_layout_and_position_embedding(model):
    """embed = LN -> Linear -> LN over (p1 p2 c) patch vectors in row-major patch order,
    plus the fixed 2-D sin-cos embedding."""
    x = images(2, seed=7)
    patches = torch.stack([x[:, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4].permute(0, 2, 3, 1).reshape(2, 48)
                           for r in range(8) for c in range(8)], dim=1)  # (B, N, 48)
    ln1, lin, ln2 = model.to_patch_embedding
    want = _layer_norm(ln2, _layer_norm(ln1, patches) @ lin.weight.t() + lin.bias)
    pe = posemb_sincos_2d(8, 8, 32)
    torch.testing.assert_close(model.embed(x), want + pe, atol=1e-5, rtol=1e-5)
    # sin-cos: patch (row 2, col 5), frequency j: sin(col * w_j), cos(col * w_j), sin(row * w_j), cos(row * w_j)
    omega = [1.0 / 10000 ** (j / 7) for j in range(8)]
    p = pe[2 * 8 + 5]
    torch.testing.assert_close(p, torch.tensor([math.sin(5 * w) for w in omega] + [math.cos(5 * w) for w in omega]
                                               + [math.sin(2 * w) for w in omega] + [math.cos(2 * w) for w in omega]))
    with pytest.raises(ValueError, match="multiple of 4"):
        posemb_sincos_2d(8, 8, 30)


def test_attention_state_by_hand(model):
    """The paper's state: LN -> attention -> output projection of the first block on all
    patches (no residual), averaged over D."""
    tokens = model.embed(images(3, seed=8))
    want = torch.stack([_attention_by_hand(model.transformer.layers[0][0], t).mean(-1) for t in tokens])
    got = model.attention_state(tokens)
    assert got.shape == (3, N)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_attention_state_fast_path_matches_the_plain_computation(model):
    """attention_state folds the values and the output projection into one number per
    head and token; the result is the plain module's, averaged over D, to float rounding."""
    tokens = model.embed(images(4, seed=9))
    with torch.no_grad():
        torch.testing.assert_close(model.attention_state(tokens), attention_state_reference(model, tokens),
                                   atol=1e-6, rtol=1e-5)
        # Also on a trained-looking scale: tokens 10x larger sharpen the softmax.
        torch.testing.assert_close(model.attention_state(10 * tokens), attention_state_reference(model, 10 * tokens),
                                   atol=1e-5, rtol=1e-4)


def test_paper_config_parameter_count():
    """dim 128, depth 6, heads 16, dim_head 64, mlp 512, 10 classes, 4x4 patches of RGB."""
    model = SimpleViT(image_size=32, patch_size=4, num_classes=10, dim=128, depth=6, heads=16, mlp_dim=512,
                      dim_head=64)
    dim, patch_dim, inner, mlp, depth, classes = 128, 4 * 4 * 3, 16 * 64, 512, 6, 10
    ln = lambda width: 2 * width  # noqa: E731  (weight and bias)
    embedding = ln(patch_dim) + patch_dim * dim + dim + ln(dim)
    attention = ln(dim) + dim * 3 * inner + inner * dim  # qkv and out projections have no bias
    feedforward = ln(dim) + dim * mlp + mlp + mlp * dim + dim
    head = ln(dim) + dim * classes + classes  # LayerNorm of the token mean, then Linear
    expected = embedding + depth * (attention + feedforward) + head
    assert expected == 3_947_242
    assert sum(p.numel() for p in model.parameters()) == expected
    assert abs(expected - 3.95e6) < 0.01e6  # "about 3.95M" (docs/AGENTVIT.md)
    # The position embedding is fixed, not learned.
    assert not any("pos" in name for name, _ in model.named_parameters())


def test_init_weights_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = SimpleViT(image_size=32, patch_size=4, num_classes=10, dim=32, depth=1, heads=2, mlp_dim=64, dim_head=16)
    b = SimpleViT(image_size=32, patch_size=4, num_classes=10, dim=32, depth=1, heads=2, mlp_dim=64, dim_head=16)
    torch.random.set_rng_state(before)
    init_weights(a, torch.Generator().manual_seed(5))
    init_weights(b, torch.Generator().manual_seed(5))
    assert torch.equal(torch.random.get_rng_state(), before)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    lin = a.transformer.layers[0][1].net[1]
    w = lin.weight.detach()
    bound = 1 / math.sqrt(lin.in_features)
    assert float(w.abs().max()) <= bound and float(w.abs().max()) > 0.9 * bound


def keep_forms(b, n, generator):
    """One keep of each form `select_tokens` takes."""
    per_image = torch.sort(torch.rand(b, n, generator=generator).argsort(dim=1)[:, :5], dim=1).values
    uneven = torch.rand(b, n, generator=generator) < 0.3
    uneven[:, 0] = True  # no empty row
    return {"none": None, "shared index": torch.tensor([3, 7, 20, n - 1]), "per-image index": per_image,
            "shared bool": uneven[0], "uneven bool": uneven, "padded": padded(uneven)}


def padded(mask: torch.Tensor) -> PaddedKeep:
    """The `PaddedKeep` of a (B, N) bool mask, made as the env's action parser makes it."""
    counts = mask.sum(dim=1)
    longest = int(counts.max())
    return PaddedKeep(torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices[:, :longest],
                      torch.arange(longest) < counts[:, None])


def test_rows_padded_on_the_host_are_the_bool_masks_rows(model):
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    forms = keep_forms(4, model.num_patches, torch.Generator().manual_seed(2))
    tokens = model.embed(x)
    for (got, got_mask), (want, want_mask) in ((select_tokens(tokens, forms["padded"]),
                                                 select_tokens(tokens, forms["uneven bool"])),
                                                (model.embed_kept(x, forms["padded"]),
                                                 model.embed_kept(x, forms["uneven bool"]))):
        assert torch.equal(got, want) and torch.equal(got_mask, want_mask)
    assert torch.equal(model(x, forms["padded"]), model(x, forms["uneven bool"]))


@pytest.mark.parametrize("form", ["none", "shared index", "per-image index", "shared bool", "uneven bool", "padded"])
def test_embedding_the_kept_patches_only_equals_selecting_from_the_whole_embedding(model, form):
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    keep = keep_forms(4, model.num_patches, torch.Generator().manual_seed(2))[form]
    want, want_mask = select_tokens(model.embed(x), keep)
    got, got_mask = model.embed_kept(x, keep)
    assert torch.equal(got, want)  # the embedding is per patch: the same numbers, bit for bit
    assert (got_mask is None) == (want_mask is None) and (got_mask is None or torch.equal(got_mask, want_mask))
    torch.testing.assert_close(model(x, keep), model.forward_tokens(model.embed(x), keep), rtol=0, atol=0)


@pytest.mark.parametrize("form", ["none", "shared index", "per-image index", "shared bool", "uneven bool", "padded"])
def test_place_tokens_puts_each_value_back_at_its_patch(model, form):
    b, n = 4, model.num_patches
    keep = keep_forms(b, n, torch.Generator().manual_seed(3))[form]
    position = torch.arange(n, dtype=torch.float32).expand(b, n) + 1  # patch i carries i + 1
    chosen, _ = select_tokens(position.unsqueeze(-1), keep)
    placed = place_tokens(chosen.squeeze(-1), keep, n)
    # Computed another way: the (B, N) mask of what was kept, from the keep's own form.
    if keep is None:
        kept = torch.ones(b, n, dtype=torch.bool)
    elif isinstance(keep, PaddedKeep):
        kept = torch.zeros(b, n, dtype=torch.bool).scatter_(1, keep.index, keep.key_mask)
    elif keep.dtype == torch.bool:
        kept = keep.expand(b, n)
    else:
        kept = torch.zeros(b, n, dtype=torch.bool)
        kept[torch.arange(b)[:, None], keep.expand(b, -1)] = True
    assert torch.equal(placed, torch.where(kept, position, torch.zeros(())))


@pytest.mark.parametrize("channels,image_size,patch_size", [(3, 32, 4), (1, 28, 7), (2, 8, 2)])
def test_patch_pixel_offsets_name_patchifys_pixels(channels, image_size, patch_size):
    """Each patch's offsets in the flattened image are the pixels `patchify` puts in that
    patch, in its order: patchify an image whose pixels are their own offsets."""
    model = SimpleViT(image_size=image_size, patch_size=patch_size, num_classes=3, dim=8, depth=1, heads=1,
                      mlp_dim=8, channels=channels, dim_head=4)
    img = torch.arange(channels * image_size * image_size, dtype=torch.float64).view(1, channels, image_size,
                                                                                    image_size)
    want = model.patchify(img)[0].long()
    assert torch.equal(patch_pixel_offsets(channels, image_size, patch_size), want)
    assert torch.equal(model.patch_pixels, want)

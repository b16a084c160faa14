"""step_flops against torch's FLOP counter, against hand-computed numbers, and the env's
info["flops"] against the counter run on a whole env.step.

FlopCounterMode has no formula for SDPA's fused CPU kernel and counts nothing for it, so
the comparisons run attention on SDPA's math backend (two batched products, counted).
"""
import contextlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from tiny_env import TINY
from patchenv.env import PatchSelectionEnv
from patchenv.model.flops import PARTS, step_flops
from patchenv.model.vit import SimpleViT

VIT = dict(image_size=32, patch_size=4, num_classes=10, channels=3, dim=32, depth=2, heads=2, dim_head=16,
           mlp_dim=64)
N, B = 64, 4


def counted(fn, math_attention=True) -> int:
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH) if math_attention else contextlib.nullcontext(), counter:
        fn()
    return counter.get_total_flops()


def keeps(rng):
    """(name, keep, K): every kind of mask `select_tokens` takes, K the sequence length."""
    uneven = torch.from_numpy(rng.random((B, N)) < 0.4)
    uneven[:, 0] = True
    equal = torch.stack([torch.from_numpy(rng.permutation(N)[:20]) for _ in range(B)])
    return [("all", None, N), ("index-1", torch.tensor([7]), 1), ("index-10", torch.arange(10) * 3, 10),
            ("index-63", torch.arange(1, N), 63), ("bool-1d", torch.arange(N) % 3 == 0, 22),
            ("equal-rows", equal, 20), ("uneven-rows", uneven, int(uneven.sum(1).max()))]


@pytest.mark.parametrize("case", range(7))
def test_step_flops_equal_torch_flop_counter(case):
    """Forward + backward of forward_tokens(embed(x), keep) and the loss: the count
    equals FlopCounterMode's exactly, padding of uneven rows included; so does the
    forward alone."""
    torch.manual_seed(0)
    model = SimpleViT(**VIT)
    x, y = torch.randn(B, 3, 32, 32), torch.randint(10, (B,))
    name, keep, k = keeps(np.random.default_rng(case))[case]

    def forward():
        return F.cross_entropy(model.forward_tokens(model.embed(x), keep), y)

    expected = step_flops(VIT, B, k)
    assert counted(lambda: forward().backward()) == expected["total"], name
    with torch.no_grad():
        assert counted(forward) == expected["forward"], name


@pytest.mark.parametrize("case", range(7))
def test_a_step_that_embeds_the_kept_patches_only_is_counted_so(case):
    """``model(x, keep)`` embeds the kept patches alone (padding slots of uneven rows
    included): FlopCounterMode's count is step_flops with ``embedded=K``."""
    torch.manual_seed(0)
    model = SimpleViT(**VIT)
    x, y = torch.randn(B, 3, 32, 32), torch.randint(10, (B,))
    name, keep, k = keeps(np.random.default_rng(case))[case]
    expected = step_flops(VIT, B, k, embedded=k)
    assert counted(lambda: F.cross_entropy(model(x, keep), y).backward()) == expected["total"], name
    assert expected["embed"] == 2 * B * k * 48 * 32  # P = 3 * 4 * 4, D = 32


def test_the_count_envs_info_flops_is_what_its_step_computes():
    """A count with the progress observation: the env's whole step, counted, is the kept
    patches' embedding and the transformer on them (the probe ran at reset and is charged
    to the first step as probe_flops; none after)."""
    env = PatchSelectionEnv(**TINY, selection="count", val_fraction=0.2, probe_every=10**9)
    env.reset(seed=0)
    for a in (63, 4, 30):
        info = {}
        flops = counted(lambda: info.update(env.step(a)[4]))
        train = info["flops"] - info["probe_flops"]
        assert train == flops == step_flops(env.vit_config, env.batch_size, a + 1, embedded=a + 1)["total"]


def test_default_cpu_attention_is_what_the_counter_misses():
    """On the default backend the counter sees no attention products on the CPU (the
    reason the tests use the math backend); should a torch version count them, they
    must be the ones step_flops counts."""
    model, x, y = SimpleViT(**VIT), torch.randn(B, 3, 32, 32), torch.randint(10, (B,))
    got = counted(lambda: F.cross_entropy(model(x, torch.arange(12)), y).backward(), math_attention=False)
    qk_av = 2 * 2 * 2 * B * 12 * 12 * VIT["heads"] * VIT["dim_head"]  # depth 2, two products, forward
    full = step_flops(VIT, B, 12, embedded=12)["total"]  # model(x, keep) embeds the 12 kept patches only
    assert got in (full, full - 3 * qk_av)


def test_paper_step_by_hand():
    """The paper's ViT (D 128, 6 blocks, 16 heads of 64, MLP 512, 4x4 patches of 32x32
    RGB images, 10 classes), B = 128, all 64 patches, written out:
    embed 2*128*64*48*128; per block qkv 2*128*64*128*3072, Q K^T and A V 2*128*64*64*1024
    each, output 2*128*64*1024*128, MLP 2 * 2*128*64*128*512; head 2*128*128*10."""
    paper = dict(image_size=32, patch_size=4, num_classes=10, channels=3, dim=128, depth=6, heads=16, dim_head=64,
                 mlp_dim=512)
    f = step_flops(paper, 128, 64)
    assert f["embed"] == 100_663_296
    assert f["attention"] == 6 * (6_442_450_944 + 2 * 1_073_741_824 + 2_147_483_648) == 64_424_509_440
    assert f["mlp"] == 6 * 2_147_483_648 == 12_884_901_888
    assert f["head"] == 327_680
    assert f["forward"] == sum(f[p] for p in PARTS) == 77_410_402_304
    assert f["backward"] == 2 * f["forward"] and f["total"] == 232_231_206_912
    assert all(type(v) is int for v in f.values())
    # The same model, counted by torch on the meta device (no memory, no arithmetic).
    with torch.device("meta"):
        model = SimpleViT(**paper)
        x, y = torch.empty(128, 3, 32, 32), torch.zeros(128, dtype=torch.long)
    assert counted(lambda: F.cross_entropy(model(x), y).backward()) == f["total"]
    # Half the patches: the transformer's products shrink (the quadratic part by 4), the
    # embedding does not.
    half = step_flops(paper, 128, 32)
    assert half["embed"] == f["embed"] and half["mlp"] * 2 == f["mlp"] and half["total"] < 0.5 * f["total"]


@pytest.mark.parametrize("bad", [dict(batch_size=0, seq_len=4), dict(batch_size=4, seq_len=0),
                                 dict(batch_size=4, seq_len=65)])
def test_shapes_out_of_range_are_refused(bad):
    with pytest.raises(ValueError, match=r"seq_len in \[1, 64\]"):
        step_flops(VIT, **bad)
    for embedded in (0, 65):
        with pytest.raises(ValueError, match=rf"need embedded in \[1, 64\] patches per image, got {embedded}"):
            step_flops(VIT, 4, 8, embedded=embedded)


@pytest.mark.parametrize("selection", ["batch", "image"])
def test_env_info_flops_is_what_the_step_computes(selection):
    """info["flops"] equals FlopCounterMode run on the whole env.step (which also embeds
    the next batch for its observation: the same shape as this batch's embedding, which
    the observation before did), for full, shared, equal and uneven masks."""
    env = PatchSelectionEnv(**TINY, selection=selection)
    b, n = env.batch_size, env.num_patches
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    if selection == "batch":
        actions = [np.ones(n), (np.arange(n) < 10), (np.arange(n) % 4 == 0)]
        longest = [n, 10, 16]
    else:
        equal = np.zeros((b, n))
        for row in equal:
            row[rng.permutation(n)[:12]] = 1
        uneven = rng.random((b, n)) < 0.3
        uneven[:, 0] = True
        actions = [np.ones((b, n)), equal, uneven]
        longest = [n, 12, int(uneven.sum(1).max())]
    for action, k in zip(actions, longest):
        info = {}
        flops = counted(lambda: info.update(env.step(action.astype(np.int8))[4]))
        assert info["flops"] == flops == step_flops(env.vit_config, b, k)["total"]
        assert type(info["flops"]) is int
    assert sorted(env.unwrapped.setup.flops_by_length) == sorted(set(longest))  # one computation per sequence length

"""agents/heuristics.py: ``norm_topk`` and ``attention_topk`` keep the top-k patches of their
score, checked against torch.topk on the score computed by hand, numpy or torch input."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import agents


def by_hand(scores: torch.Tensor, k: int) -> np.ndarray:
    mask = torch.zeros_like(scores, dtype=torch.int8)
    return mask.scatter_(-1, torch.topk(scores, k, dim=-1).indices, 1).numpy()


@pytest.mark.parametrize("as_tensor", [False, True])
def test_norm_topk_keeps_the_largest_embedding_norms(as_tensor):
    torch.manual_seed(0)
    pooled, embeddings = torch.randn(64, 32), torch.randn(4, 64, 32)  # (N, D) and (B, N, D)
    batch, image = agents.make("norm_topk", k=10), agents.make("norm_topk", k=10, selection="image")
    assert (batch.obs_type, image.obs_type) == ("pooled", "embeddings")
    convert = (lambda t: t) if as_tensor else (lambda t: t.numpy())
    assert np.array_equal(batch.act(convert(pooled)), by_hand(pooled.norm(dim=-1), 10))
    assert np.array_equal(image.act(convert(embeddings)), by_hand(embeddings.norm(dim=-1), 10))


@pytest.mark.parametrize("as_tensor", [False, True])
def test_attention_topk_keeps_the_largest_attention_state(as_tensor):
    torch.manual_seed(1)
    state = torch.randn(4, 64)  # (B, N), both selections
    batch, image = agents.make("attention_topk", k=7), agents.make("attention_topk", k=7, selection="image")
    assert batch.obs_type == image.obs_type == "attention"
    convert = (lambda t: t) if as_tensor else (lambda t: t.numpy())
    assert np.array_equal(batch.act(convert(state)), by_hand(state.mean(dim=0), 7))  # the batch mean
    assert np.array_equal(image.act(convert(state)), by_hand(state, 7))  # each image's own


@pytest.mark.parametrize("name", ["norm_topk", "attention_topk"])
def test_k_defaults_to_the_envs_target_and_the_seed_changes_nothing(name):
    obs = np.random.default_rng(2).random((64, 32) if name == "norm_topk" else (4, 64)).astype(np.float32)
    agent, other_seed = agents.make(name), agents.make(name, seed=9)
    assert agent.act(obs).sum() == 32  # before setup: N / 2
    for a in (agent, other_seed):
        a.setup(SimpleNamespace(unwrapped=SimpleNamespace(num_patches=64, batch_size=4, n_patch_desired=30,
                                                          **a.env_kwargs())))
    assert agent.act(obs).sum() == 30 and np.array_equal(agent.act(obs), other_seed.act(obs))

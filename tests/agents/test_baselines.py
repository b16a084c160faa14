"""agents/baselines.py: ``all`` keeps every patch; ``random`` keeps k uniformly random
patches (per batch or per image), its draws checked against the generator by hand."""
from types import SimpleNamespace

import numpy as np
import pytest

import agents


def fake_env(agent, n_patch_desired=30):
    """What `setup` reads of an env, without building one (N = 64, B = 4)."""
    return SimpleNamespace(unwrapped=SimpleNamespace(num_patches=64, batch_size=4, n_patch_desired=n_patch_desired,
                                                     **agent.env_kwargs()))


def test_all_keeps_every_patch_in_the_shape_of_its_selection():
    batch, image = agents.make("all"), agents.make("all", selection="image")
    assert (batch.obs_type, image.obs_type) == ("pooled", "attention")  # the cheapest with the mask's shape
    mask = batch.act(np.zeros((64, 32), np.float32))
    assert mask.dtype == np.int8 and mask.shape == (64,) and mask.all()
    mask = image.act(np.zeros((4, 64), np.float32))
    assert mask.dtype == np.int8 and mask.shape == (4, 64) and mask.all()


@pytest.mark.parametrize("selection,rows", [("batch", 1), ("image", 4)])
def test_random_draws_k_patches_from_its_seeded_generator(selection, rows):
    agent = agents.make("random", k=5, selection=selection, seed=7)
    agent.setup(fake_env(agent))
    obs = np.zeros((64, 32) if selection == "batch" else (4, 64), np.float32)
    by_hand = np.random.default_rng(7)
    for _ in range(3):
        keep = np.argsort(by_hand.random((rows, 64)), axis=1)[:, :5]
        want = np.zeros((rows, 64), np.int8)
        np.put_along_axis(want, keep, 1, axis=1)
        mask = agent.act(obs)
        assert mask.dtype == np.int8 and np.array_equal(mask, want[0] if selection == "batch" else want)
        assert (mask.sum(axis=-1) == 5).all()


def test_random_without_k_keeps_the_envs_target_else_half():
    agent = agents.make("random")
    assert agent.act(np.zeros((64, 32), np.float32)).sum() == 32  # before setup: N / 2
    agent.setup(fake_env(agent))
    assert agent.act(np.zeros((64, 32), np.float32)).sum() == 30  # the env's n_patch_desired
    assert agent.config() == {"k": None, "selection": "batch", "seed": 0}

"""A training batch as the run loads it (`RunSetup.training_batch`, `RunSetup.normalize`):
the numbers the plain pipeline gives, uint8 images indexed, cropped and flipped, then
scaled and normalised (`patchenv.data`), bit for bit."""
import gymnasium as gym
import torch

from patchenv.data import normalize, to_unit
from patchenv.data.transforms import apply_augmentation, draw_augmentation
from tiny_env import TINY


def setup_of_tiny_env():
    env = gym.make("patchenv/PatchSelection-v1", **TINY)
    env.reset(seed=0)
    return env.unwrapped.run.setup


def test_normalize_equals_the_data_modules_and_leaves_its_input():
    setup = setup_of_tiny_env()
    images = setup.data.train_x[:8].clone()
    before = images.clone()
    got = setup.normalize(images)
    assert got.dtype == torch.float32
    assert torch.equal(got, normalize(to_unit(images.clone()), setup.mean, setup.std))
    assert torch.equal(images, before)


def test_training_batch_is_the_plain_pipelines():
    setup = setup_of_tiny_env()
    idx = torch.randperm(len(setup.data.train_y), generator=torch.Generator().manual_seed(1))[:16]
    draws = draw_augmentation(16, setup.device, torch.Generator().manual_seed(2))
    x, y = setup.training_batch(idx, draws)
    want = normalize(to_unit(apply_augmentation(setup.data.train_x[idx], *draws)), setup.mean, setup.std)
    assert torch.equal(x, want)
    assert torch.equal(y, setup.data.train_y[idx])
    assert not torch.equal(x, normalize(to_unit(setup.data.train_x[idx]), setup.mean, setup.std))  # augmented

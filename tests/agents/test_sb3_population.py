"""PopulationVecEnv: SB3's VecEnv over a population gives what SB3's DummyVecEnv of the
same runs as single envs gives (their observations, rewards, dones and resets), and an
SB3 algorithm trains on it."""
import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.sb3_population import PopulationVecEnv
from same_vec_step import assert_same_vec_step
from patchenv.data.generated import synthetic

DATA = synthetic(n_train=48, n_test=16, image_size=16, seed=2)
KW = dict(dataset=DATA, batch_size=16, patch_size=4, dim=32, depth=2, heads=2, dim_head=16, mlp_dim=64,
          device="cpu", n_patch_desired=8, obs_type="pooled")


def test_the_adapter_steps_as_dummy_vec_env_of_single_envs():
    venv = PopulationVecEnv(gym.make_vec("patchenv/Digits-v1", num_envs=2, vectorization_mode="vector_entry_point",
                                         **KW))
    dummy = DummyVecEnv([lambda: gym.make("patchenv/Digits-v1", **KW)] * 2)
    venv.seed(3)
    dummy.seed(3)
    np.testing.assert_allclose(venv.reset(), dummy.reset(), rtol=1e-4, atol=1e-5)
    rng = np.random.default_rng(0)
    dones_seen = 0
    for _ in range(7):  # an epoch is 3 steps: two episode ends, each reset at once
        a = (rng.random((2, 16)) < 0.5).astype(np.int8)
        a[:, 0] = 1
        got, want = venv.step(a), dummy.step(a)
        dones_seen += assert_same_vec_step(got, want)
        for info, d_info in zip(got[3], want[3]):
            assert info["loss"] == pytest.approx(d_info["loss"], rel=1e-4)
    assert dones_seen == 4


def test_ppo_learns_on_a_population():
    venv = PopulationVecEnv(gym.make_vec("patchenv/Digits-v1", num_envs=2, vectorization_mode="vector_entry_point",
                                         **dict(KW, selection="count", obs_type="progress")))
    model = PPO("MlpPolicy", venv, n_steps=4, batch_size=8, n_epochs=1, seed=0, device="cpu")
    model.learn(16)
    assert model.num_timesteps == 16 and venv.get_attr("global_step")[0] >= 6

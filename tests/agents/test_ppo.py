"""agents/ppo.py: the per-patch features extractor, the step budget, the agent's own time,
per-image selection through the flatten wrapper, and the non-empty mask it relies on."""
import time

import numpy as np

import agents
from agent_envs import make_env, pending_obs
from agents.ppo import PatchFeatures
from tiny_env import TINY

def test_ppo_extractor_works_per_patch_and_budget_is_respected():
    agent = agents.make("ppo", n_steps=2048)
    env = make_env(agent)
    agent.train(env, steps=20)
    assert env.unwrapped.global_step == 20 and agent.model.n_steps == 20  # not a 2048-step rollout
    extractor = agent.model.policy.features_extractor
    assert isinstance(extractor, PatchFeatures)
    first = extractor.per_item[0]
    assert first.in_features == TINY["dim"]  # a shared MLP over each patch's D-vector, not N * D inputs
    assert extractor.features_dim == 64 * agent.hp.item_features + agent.hp.item_features
    overhead, vit, t0 = agent.overhead_time_s, env.unwrapped.train_time_s, time.perf_counter()
    agent.train(env, steps=12, callback=lambda tr: time.sleep(0.01))  # the same model carries on, shorter rollout
    wall = time.perf_counter() - t0
    assert env.unwrapped.global_step == 32 and agent.model.num_timesteps == 32
    # overhead_time_s leaves out the env's steps and the callback (0.12 s)
    assert 0 < agent.overhead_time_s - overhead <= wall - 0.12 - (env.unwrapped.train_time_s - vit) + 1e-3


def test_ppo_per_image_selection_through_the_flatten_wrapper():
    agent = agents.make("ppo", selection="image")
    env = make_env(agent)
    assert env.action_space.shape == (TINY["batch_size"], 64)
    agent.train(env, steps=16)
    action = agent.act(pending_obs(env))
    assert action.shape == (TINY["batch_size"], 64) and env.action_space.contains(action)


def test_hyperparameters_reach_sb3():
    agent = agents.make("ppo", batch_size=4, n_epochs=2, learning_rate=1e-3, gamma=0.9, gae_lambda=0.8,
                        clip_range=0.3, ent_coef=0.01, item_hidden=16, item_features=3, net_arch=[8])
    assert agent.config()["net_arch"] == [8] and agent.hp.net_arch == (8,)
    env = make_env(agent)
    agent.train(env, steps=8)
    m = agent.model
    assert (m.n_steps, m.batch_size, m.n_epochs, m.gamma, m.gae_lambda, m.ent_coef) == (8, 4, 2, 0.9, 0.8, 0.01)
    assert m.learning_rate == 1e-3 and m.clip_range(1.0) == 0.3
    extractor = m.policy.features_extractor
    assert (extractor.per_item[0].out_features, extractor.per_item[2].out_features) == (16, 3)
    assert extractor.features_dim == 64 * 3 + 3
    assert [layer.out_features for layer in m.policy.mlp_extractor.policy_net if hasattr(layer, "out_features")] == [8]


def test_nonempty_mask_wrapper():
    from patchenv.wrappers import ensure_nonempty

    assert ensure_nonempty(np.zeros(4)).tolist() == [1, 1, 1, 1]
    assert ensure_nonempty(np.array([[0, 1], [0, 0]])).tolist() == [[0, 1], [1, 1]]
    assert ensure_nonempty(np.array([0.0, 2.0])).tolist() == [0.0, 2.0]  # bad values still reach the env


def test_the_mini_batch_divides_the_rollout_so_sb3_truncates_none():
    from agents.ppo import minibatch

    # (rollout, mini-batch): one of 44; one of 64; 50 + 50; 64 + 64; 49 + 48; 27 of 63 (26 x 63 + 50)
    assert [minibatch(64, n) for n in (44, 64, 100, 128, 97, 1688)] == [44, 64, 50, 64, 49, 63]

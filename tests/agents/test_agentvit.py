"""agents/agentvit.py: the paper's DQN against hand-computed values: hyperparameters,
networks, epsilon, the action, the TD loss, clipping, the replay, s', the reward's
reference and save/load."""
import math

import numpy as np
import pytest
import torch

import agents
from agent_envs import make_env, params, pending_obs
from agents.agentvit import AgentViT
from tiny_env import TINY

def test_agentvit_accepts_the_readme_hyperparameters():
    agent = agents.make("agentvit", buffer_size=64, buffer_batch_size=8, gamma=0.95, eps_start=1, eps_end=0.01,
                        eps_decay=20000, eta=0.01, tau=0.1, update_every=2, frequency=50)
    assert isinstance(agent, AgentViT)
    assert (agent.hp.buffer_size, agent.hp.buffer_batch_size, agent.hp.gamma, agent.hp.eta, agent.hp.tau,
            agent.hp.update_every, agent.hp.frequency, agent.hp.eps_decay) == (64, 8, 0.95, 0.01, 0.1, 2, 50, 20000)
    assert agent.hp == agents.make("agentvit").hp  # the defaults are the paper's values
    assert agent.obs_type == "attention" and agent.selection == "batch"
    assert agent.env_kwargs()["tensor_obs"] is True
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) not_a_hyperparameter; expected some of buffer_size"):
        agents.make("agentvit", not_a_hyperparameter=1)
    with pytest.raises(ValueError, match=r"buffer_batch_size \(8\) cannot exceed buffer_size \(4\)"):
        agents.make("agentvit", buffer_size=4, buffer_batch_size=8)


def test_agentvit_networks_are_the_papers():
    agent = agents.make("agentvit")
    q_before = agent.q_network  # exists from make(), for the paper's N = 64
    agent.setup(make_env(agent))
    assert agent.q_network is q_before  # the env has N = 64 too: same network, replay sized
    for net in (agent.q_network, agent.target_network):
        linear = [m for m in net if isinstance(m, torch.nn.Linear)]
        assert [(m.in_features, m.out_features) for m in linear] == [(64, 1024), (1024, 256), (256, 64)]
        assert sum(isinstance(m, torch.nn.ReLU) for m in net) == 2
    assert isinstance(agent.optimizer, torch.optim.AdamW)
    assert agent.optimizer.defaults["lr"] == 0.01 and agent.optimizer.defaults["amsgrad"] is True


def test_agentvit_epsilon_schedule_by_hand():
    agent = agents.make("agentvit", eps_start=1.0, eps_end=0.01, eps_decay=20000)
    for it in (0, 1, 390, 5000, 20000, 100000):
        assert agent.epsilon(it) == pytest.approx(0.01 + 0.99 * math.exp(-it / 20000), rel=1e-12)
    assert agent.epsilon(0) == 1.0
    assert agent.epsilon(20000) == pytest.approx(0.01 + 0.99 / math.e)
    custom = agents.make("agentvit", eps_start=0.5, eps_end=0.1, eps_decay=10)
    assert custom.epsilon(10) == pytest.approx(0.1 + 0.4 * math.exp(-1))
    # The training loop counts ViT iterations.
    env = make_env(custom)
    custom.train(env, steps=12)
    assert custom.iteration == 12
    assert custom.epsilon() == pytest.approx(0.1 + 0.4 * math.exp(-1.2))


def test_agentvit_action_is_batch_mean_q_cut_at_its_mean():
    agent = agents.make("agentvit", seed=3)
    env = make_env(agent)
    agent.setup(env)
    obs = pending_obs(env)
    assert isinstance(obs, torch.Tensor) and obs.shape == (TINY["batch_size"], 64)
    with torch.no_grad():
        q = agent.q_network(obs).mean(dim=0).numpy()
    expected = (q >= q.mean()).astype(np.int8)
    assert np.array_equal(agent.act(obs), expected)
    assert np.array_equal(agent.act(obs.numpy()), expected)  # numpy observations work too
    # Exploration: a uniform random vector cut at its own mean keeps about half.
    always = agents.make("agentvit", eps_start=1.0, eps_end=1.0)
    always.setup(env)
    kept = [always.act(obs, explore=True).sum() for _ in range(200)]
    assert 28 < np.mean(kept) < 36


def test_agentvit_loss_on_a_hand_made_batch_is_the_papers_formula():
    torch.manual_seed(0)
    gamma, tau, b, n = 0.9, 0.25, TINY["batch_size"], 64
    agent = agents.make("agentvit", buffer_size=3, buffer_batch_size=3, gamma=gamma, tau=tau, update_every=1)
    agent.setup(make_env(agent))
    states, next_states = torch.randn(3, b, n), torch.randn(3, b, n)
    rewards = torch.tensor([1.5, -2.0, 0.25])
    # The target network differs from the Q-network, so the formula's two terms are distinct.
    with torch.no_grad():
        for p in agent.target_network.parameters():
            p.add_(0.05 * torch.randn_like(p))
    for s, s2, r in zip(states, next_states, rewards):
        agent.store(s, s2, float(r))

    with torch.no_grad():
        q = agent.q_network(states.reshape(-1, n))  # each image row is a sample
        y = rewards.repeat_interleave(b)[:, None] + gamma * agent.target_network(next_states.reshape(-1, n))
        d = (q - y).abs()
        expected = torch.where(d < 1, 0.5 * d**2, d - 0.5).mean()  # SmoothL1, beta 1
    q_before, target_before = params(agent.q_network), params(agent.target_network)

    loss = agent.learn()  # samples all three (without replacement), in some order
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    q_after = params(agent.q_network)
    assert any(not torch.equal(a, b_) for a, b_ in zip(q_before, q_after))
    # update_every=1: one soft update, target = tau * q + (1 - tau) * target.
    for t_old, q_new, t_new in zip(target_before, q_after, agent.target_network.parameters()):
        torch.testing.assert_close(t_new, tau * q_new + (1 - tau) * t_old)


def test_agentvit_gradient_values_are_clipped():
    agent = agents.make("agentvit", buffer_size=1, buffer_batch_size=1, clip_value=1e-3, eta=1.0)
    agent.setup(make_env(agent))
    agent.store(torch.full((TINY["batch_size"], 64), 50.0), torch.zeros(TINY["batch_size"], 64), 1e4)
    seen = []
    agent.q_network[-1].weight.register_post_accumulate_grad_hook(lambda p: seen.append(p.grad.abs().max()))
    clipped = []
    orig_step = agent.optimizer.step

    def step(*a, **k):
        clipped.append(max(p.grad.abs().max() for p in agent.q_network.parameters()))
        return orig_step(*a, **k)

    agent.optimizer.step = step
    agent.learn()
    assert seen[0] > 1e-3 and clipped[0] <= 1e-3


def test_agentvit_replay_evicts_a_random_element_when_full():
    agent = agents.make("agentvit", buffer_size=3, buffer_batch_size=1)
    agent.setup(make_env(agent))
    b = TINY["batch_size"]
    for i in range(10):
        agent.store(torch.full((b, 64), float(i)), torch.zeros(b, 64), float(i))
        stored = sorted(agent._rewards[: agent.replay_size].tolist())
        assert agent.replay_size == min(i + 1, 3) and float(i) in stored  # the newest is always kept


def test_agentvit_untrained_rebuilds_for_another_patch_count_trained_refuses():
    agent = agents.make("agentvit")
    agent.setup(make_env(agent, patch_size=8, n_patch_desired=8))  # 32x32 in 8x8 patches: N = 16
    assert agent.q_network[0].in_features == 16 and agent.q_network[-1].out_features == 16
    assert agent._states.shape == (64, TINY["batch_size"], 16)
    agent.iteration = 1  # it has trained now
    with pytest.raises(ValueError, match="N=16"):
        agent.setup(make_env(agent))


def test_agentvit_learns_within_40_steps_with_frequency_2():
    agent = agents.make("agentvit", frequency=2, learning_starts=0)
    env = make_env(agent)
    agent.setup(env)
    q0, t0 = params(agent.q_network), params(agent.target_network)
    agent.train(env, steps=40)
    assert agent.replay_size == 20  # every 2nd iteration rewarded and stored
    assert agent.updates == 20 - 8 + 1  # learning starts once buffer_batch_size transitions are stored
    assert any(not torch.equal(a, b) for a, b in zip(q0, params(agent.q_network)))
    assert any(not torch.equal(a, b) for a, b in zip(t0, params(agent.target_network)))
    assert agent.overhead_time_s > 0
    assert all(t.device == env.unwrapped.device for t in (agent._states, agent._rewards))
    stats = agent.stats()
    assert (stats["iteration"], stats["replay_size"], stats["updates"]) == (40, 20, 13)
    assert stats["epsilon"] == agent.epsilon() and stats["td_loss"] == float(agent._last_loss_t)


def test_agentvit_next_state_is_the_same_images_after_the_update():
    agent = agents.make("agentvit", frequency=1, learning_starts=0)
    env = make_env(agent)
    u = env.unwrapped
    obs = pending_obs(env)
    images = u.run.batch_x
    agent.train(env, steps=1)
    assert agent.replay_size == 1
    torch.testing.assert_close(agent._states[0], obs)
    with torch.no_grad():
        after = u.model.attention_state(u.model.embed(images))  # weights after the ViT step
    torch.testing.assert_close(agent._next_states[0], after)
    assert not torch.allclose(agent._next_states[0], obs)  # the ViT did change


def test_agentvit_rewards_count_inside_the_epoch_and_skip_the_first_epoch():
    # 2048 synthetic images / 64 = 32 batches per epoch. frequency=10 rewards batches
    # 10, 20, 30 of each epoch (the notebook's loop index restarts every epoch); with the
    # default learning_starts (one epoch) only epoch 2's 10th batch (global step 42) is stored.
    agent = agents.make("agentvit", frequency=10)
    env = make_env(agent, batch_size=64)
    agent.train(env, steps=45)
    assert agent.learning_starts == 32
    assert agent.replay_size == 1


def test_agentvit_explores_with_the_shared_exploration_mask():
    """eps = 1: every mask is patchenv.agentvit_exploration.exploration_mask after the eps draw, the
    same draw the runner's random-mask evaluation uses."""
    from patchenv.agentvit_exploration import exploration_mask

    agent = agents.make("agentvit", eps_start=1.0, eps_end=1.0, seed=3)
    by_hand = np.random.default_rng(3)
    obs = np.zeros((TINY["batch_size"], 64), np.float32)
    for _ in range(5):
        by_hand.random()  # the eps test
        assert np.array_equal(agent.act(obs, explore=True), exploration_mask(by_hand, 64))


def test_agentvit_reward_reference_is_the_first_rewarded_batch():
    """The notebook's L(ref): the training loss of batch `frequency` of epoch 1, not of the
    run's first step. The rewards the agent stores (batches 4 and 8) by hand:
    R = 1 * L(ref)/L(t) + 20 * -|z - z*|/z*, z = 64 - kept, z* = 64 - 30."""
    agent = agents.make("agentvit", frequency=4, learning_starts=0)
    assert agent.env_kwargs()["loss_ref_step"] == 4
    env = make_env(agent)
    assert env.unwrapped.loss_ref_step == 4
    infos = []
    agent.train(env, steps=9, callback=lambda tr: infos.append(tr.info))
    losses = [float(info["loss"]) for info in infos]  # 0-d tensors: the env has tensor_obs

    def by_hand(t):  # t counted from 1, as the notebook's batch index
        return losses[3] / losses[t - 1] + 20 * -abs((64 - infos[t - 1]["kept"]) - 34) / 34

    assert agent.replay_size == 2
    assert agent._rewards[:2].tolist() == pytest.approx([by_hand(4), by_hand(8)], rel=1e-6)
    assert by_hand(8) != pytest.approx(losses[0] / losses[7] + 20 * -abs((64 - infos[7]["kept"]) - 34) / 34)
    # An env built with another reference is refused before any step.
    with pytest.raises(ValueError, match="loss_ref_step=4 .*the env has loss_ref_step=1"):
        agent.setup(make_env(agent, loss_ref_step=1))


def test_agentvit_save_load_restores_everything(tmp_path):
    agent = agents.make("agentvit", frequency=2, learning_starts=0, seed=5)
    env = make_env(agent)
    agent.train(env, steps=24)
    agent.save(tmp_path / "a.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]  # no temp file left behind
    loaded = agents.load(tmp_path / "a.pt")
    assert loaded.hp == agent.hp and loaded.overhead_time_s == agent.overhead_time_s
    assert (loaded.iteration, loaded.updates, loaded.replay_size) == (agent.iteration, agent.updates,
                                                                      agent.replay_size)
    obs = pending_obs(env)
    assert np.array_equal(loaded.act(obs), agent.act(obs))
    # The RNG, the replay and the optimiser come back too: exploration and learning continue identically.
    assert all(np.array_equal(loaded.act(obs, explore=True), agent.act(obs, explore=True)) for _ in range(5))
    torch.testing.assert_close(agent.learn(), loaded.learn())
    for a, b in zip(agent.q_network.parameters(), loaded.q_network.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="cannot read agent file"):
        (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
        agents.make("agentvit").load(tmp_path / "bad.pt")

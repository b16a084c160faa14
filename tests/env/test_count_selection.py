"""Keep-rate control: selection="count", the progress observation and reward, patch_credit."""
import copy
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from tiny_env import TINY
from patchenv import data as data_mod
from patchenv.model.flops import step_flops
from patchenv.env.progress import PROGRESS_FEATURES

ID = "patchenv/PatchSelection-v1"
COUNT = dict(TINY, selection="count", val_fraction=0.2, budget_epochs=2, probe_every=3, probe_size=40)


def make(**kw):
    return gym.make(ID, **{**COUNT, **kw})


def test_count_spaces_and_both_checkers():
    env = make(reward="progress")
    u = env.unwrapped
    assert env.action_space == gym.spaces.Discrete(u.num_patches)
    assert env.observation_space.shape == (len(PROGRESS_FEATURES),)
    assert u.obs_type == "progress"  # the default observation of a count
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(u, skip_render_check=True)
        sb3_check_env(u, warn=False)


@pytest.mark.parametrize("a", [0, 6, 63, np.int64(20), np.array(9), np.array([31]), torch.tensor(40)])
def test_count_keeps_a_plus_one_distinct_patches_per_image(a):
    env = make()
    env.reset(seed=0)
    _, _, _, _, info = env.step(a)
    k = int(np.asarray(a).reshape(())) + 1
    assert info["kept"] == k
    assert info["tokens"] == TINY["batch_size"] * k and info["padding_tokens"] == 0
    # Counted another way: the patches whose token received a gradient are those kept.
    credit = env.unwrapped.patch_credit()
    assert credit.shape == (TINY["batch_size"], env.unwrapped.num_patches)
    assert ((credit > 0).sum(dim=1) == k).all()


def test_count_draws_differ_per_image_and_follow_the_seed():
    def kept_sets(seed):
        env = make()
        env.reset(seed=seed)
        env.step(9)
        return (env.unwrapped.patch_credit() > 0).numpy()

    a, b, c = kept_sets(0), kept_sets(0), kept_sets(1)
    assert (a == b).all()  # the env's seed decides the draws
    assert (a != c).any()
    assert len({row.tobytes() for row in a}) > 1  # per image, not one mask for the batch


@pytest.mark.parametrize("bad, error", [(64, ValueError), (-1, ValueError), (2.0, TypeError), (True, TypeError),
                                        (np.array([1, 2]), ValueError), ("3", TypeError), (None, TypeError)])
def test_bad_counts_are_refused_and_change_nothing(bad, error):
    env = make()
    env.reset(seed=0)
    u = env.unwrapped
    before = (u.global_step, u.np_random.bit_generator.state["state"]["state"])
    with pytest.raises(error, match=r"integer in \[0, 63\]"):
        env.step(bad)
    assert (u.global_step, u.np_random.bit_generator.state["state"]["state"]) == before


def test_progress_observation_is_computed_from_the_run():
    env = make()
    obs, _ = env.reset(seed=0)
    u = env.unwrapped
    f = dict(zip(PROGRESS_FEATURES, obs))
    assert f["budget_done"] == 0 and f["kept_so_far"] == 1
    # The probe: the first probe_size validation images, every patch, untrained ViT.
    x, y = u.setup.val[0][:40], u.setup.val[1][:40]
    with torch.no_grad():
        u.model.eval()
        logits = u.model(data_mod.normalize(data_mod.to_unit(x), u.setup.mean, u.setup.std))
        u.model.train()
    assert f["probe_loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert f["probe_accuracy"] == pytest.approx((logits.argmax(-1) == y).float().mean().item())
    actions = [3, 63, 15, 7]
    for a in actions:
        obs, *_ = env.step(a)
    f = dict(zip(PROGRESS_FEATURES, obs))
    assert f["budget_done"] == pytest.approx(4 / u.total_steps)
    assert f["kept_so_far"] == pytest.approx(np.mean([a + 1 for a in actions]) / 64)
    assert f["last_kept"] == pytest.approx(8 / 64)
    assert f["epoch_done"] == pytest.approx(4 / u.steps_per_epoch)


def test_progress_reward_is_probe_improvement_per_compute():
    env = make(reward="progress")
    obs, _ = env.reset(seed=0)
    u = env.unwrapped
    full = step_flops(u.vit_config, TINY["batch_size"], 64)["total"]
    probe = step_flops(u.vit_config, 40, 64)["forward"]
    prev_loss = dict(zip(PROGRESS_FEATURES, obs))["probe_loss"]
    spent = spent_all = 0
    for t, a in enumerate([10, 2, 30, 63, 5, 1], start=1):
        obs, r, _, _, info = env.step(a)
        trained = info["flops"] - info["probe_flops"]
        assert trained == step_flops(u.vit_config, TINY["batch_size"], a + 1, embedded=a + 1)["total"]
        # The probe at reset is charged to the first step; then one every probe_every steps.
        assert info["probe_flops"] == (probe if t == 1 or t % 3 == 0 else 0)
        spent += info["flops"]
        spent_all += full + info["probe_flops"]
        if t % 3:
            assert r == 0.0
            continue
        loss = dict(zip(PROGRESS_FEATURES, obs))["probe_loss"]
        expected = (prev_loss - loss) / (spent / spent_all)
        assert np.isfinite(r) and r == pytest.approx(expected, rel=1e-4, abs=1e-7)
        prev_loss, spent, spent_all = loss, 0, 0


def test_progress_reward_without_a_split_warns_and_excludes_reward_fn():
    # Without a split the probe is a training batch: it still works, with a warning.
    with pytest.warns(UserWarning, match="not held out.*val_fraction > 0"):
        env = gym.make(ID, **{**COUNT, "val_fraction": 0.0, "reward": "progress"})
    env.reset(seed=0)
    rewards = [env.step(5)[1] for _ in range(6)]
    assert all(np.isfinite(rewards)) and any(r != 0 for r in rewards)
    with pytest.raises(ValueError, match="alternatives"):
        make(reward="progress", reward_fn=lambda s: 0.0)
    with pytest.raises(ValueError, match="reward must be one of"):
        make(reward="accuracy")


def test_patch_credit_is_the_token_gradient_norm():
    env = gym.make(ID, **TINY)
    env.reset(seed=0)
    u = env.unwrapped
    mask = np.zeros(64, dtype=np.int8)
    mask[::3] = 1
    # Computed another way: the same loss on a copy of the pre-step ViT, differentiated
    # with torch.autograd.grad.
    model = copy.deepcopy(u.model)
    tokens = model.embed(u.pending_images)
    loss = F.cross_entropy(model.forward_tokens(tokens, torch.from_numpy(np.flatnonzero(mask))), u.run.batch_y)
    (grad,) = torch.autograd.grad(loss, tokens)
    env.step(mask)
    credit = u.patch_credit()
    torch.testing.assert_close(credit, grad.norm(dim=-1), rtol=1e-4, atol=1e-7)
    assert (credit[:, mask == 0] == 0).all() and (credit[:, mask == 1] > 0).all()


def test_patch_credit_before_any_step_says_so():
    env = gym.make(ID, **TINY)
    env.reset(seed=0)
    with pytest.raises(gym.error.ResetNeeded, match="call step"):
        env.unwrapped.patch_credit()


def test_count_and_progress_resume_exactly(tmp_path):
    env = make(reward="progress")
    env.reset(seed=3)
    for a in (4, 9, 20, 63):
        env.step(a)
    env.unwrapped.save_checkpoint(tmp_path / "c.pt")
    tail = [env.step(a) for a in (1, 2, 3, 30, 40)]
    other = make(reward="progress")
    obs = other.unwrapped.load_checkpoint(tmp_path / "c.pt")
    other.reset()
    again = [other.step(a) for a in (1, 2, 3, 30, 40)]
    for (o1, r1, *_, i1), (o2, r2, *_, i2) in zip(tail, again):
        np.testing.assert_array_equal(o1, o2)
        assert r1 == r2 and i1 == i2


def test_evaluate_with_a_count_draws_none_of_the_runs_random_numbers():
    env = make()
    env.reset(seed=0)
    u = env.unwrapped
    state = copy.deepcopy(u.np_random.bit_generator.state)
    a = u.evaluate("val", masks=lambda obs: 7)
    b = u.evaluate("val", masks=7)
    assert u.np_random.bit_generator.state == state
    assert a == b  # the same fixed draws each time
    full = u.evaluate("val")
    assert 0 <= a["accuracy"] <= 1 and full["n"] == a["n"]


@pytest.mark.parametrize("algo", ["DQN", "PPO", "A2C"])
def test_sb3_algorithms_run_unchanged_on_count(algo):
    import stable_baselines3 as sb3

    env = make(reward="progress")
    kwargs = {"DQN": dict(learning_starts=16, buffer_size=200), "PPO": dict(n_steps=32, batch_size=16),
              "A2C": dict(n_steps=8)}[algo]
    model = getattr(sb3, algo)("MlpPolicy", env, seed=0, device="cpu", **kwargs)
    model.learn(64)
    assert env.unwrapped.global_step >= 64
    action, _ = model.predict(env.observation_space.sample(), deterministic=True)
    assert env.action_space.contains(int(action))


def test_the_kept_only_embedding_trains_the_same_vit_and_counts_its_flops():
    # The progress observation reads no embedding, so a step embeds only the kept
    # patches; an env whose observation reads every patch (pooled) embeds them all. Both
    # draw the same patches (the env's seed), so they must train the same ViT.
    envs = [make(probe_every=10**9), make(obs_type="pooled", probe_every=10**9)]
    for env in envs:
        env.reset(seed=3)
    for a in (4, 20, 63, 9):
        (_, _, _, _, lean), (_, _, _, _, whole) = (env.step(a) for env in envs)
        assert lean["loss"] == pytest.approx(whole["loss"], rel=1e-5)
        u = envs[0].unwrapped
        k, b = a + 1, TINY["batch_size"]
        assert lean["flops"] - lean["probe_flops"] == step_flops(u.vit_config, b, k, embedded=k)["total"]
        assert whole["flops"] == step_flops(u.vit_config, b, k)["total"]  # every patch embedded
    lean_w, whole_w = (dict(env.unwrapped.model.named_parameters()) for env in envs)
    for name, w in lean_w.items():
        torch.testing.assert_close(w, whole_w[name], rtol=1e-4, atol=1e-6)
    assert envs[0].unwrapped.run.tokens is None and envs[1].unwrapped.run.tokens is not None

"""PatchSelectionEnv: checkers, spaces, seeding, reward, token accounting, evaluation."""
import copy
import functools
import inspect
import pydoc
import warnings
from dataclasses import fields

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from tiny_env import TINY
from patchenv import data
from patchenv.data import digits, fashion_mnist
from patchenv.env.config import EnvConfig
from patchenv.model.flops import step_flops
from patchenv.env import PatchSelectionEnv
from patchenv.wrappers import FlattenMultiBinaryAction
from datasets_on_disk import write_cifar10, write_fashion_mnist

N, B, D = 64, 16, 32
IDS = ("patchenv/PatchSelection-v1", "patchenv/CIFAR10-v1", "patchenv/FashionMNIST-v1", "patchenv/Digits-v1")
SELECTIONS = ("batch", "image")
OBS_TYPES = ("embeddings", "pooled", "attention")
# The only warnings the checkers may give: the observations are unbounded embeddings, and
# (SB3) the pooled observation is 2-D, which SB3's MLP policies flatten themselves.
BENIGN = ("observation space minimum value is -infinity", "observation space maximum value is infinity",
          "unconventional shape", "is different from the unwrapped version")


def make(**kwargs) -> PatchSelectionEnv:
    return PatchSelectionEnv(**{**TINY, **kwargs})


def masks(selection, steps, seed=0, low=1):
    """Random 0/1 actions, each keeping at least `low` patches per mask."""
    rng = np.random.default_rng(seed)
    shape = (N,) if selection == "batch" else (B, N)
    out = []
    for _ in range(steps):
        a = (rng.random(shape) < rng.uniform(0.2, 0.9)).astype(np.int8)
        a[..., :low] = 1
        out.append(a)
    return out


def rollout(env, actions, seed=None):
    obs, info = env.reset(seed=seed)
    out = [(obs, info)]
    for a in actions:
        out.append(env.step(a))
    return out


def assert_same_rollout(r1, r2):
    assert len(r1) == len(r2)
    for s1, s2 in zip(r1, r2):
        assert len(s1) == len(s2)
        for x1, x2 in zip(s1, s2):
            if isinstance(x1, dict):
                assert x1.keys() == x2.keys()
                for k in x1:
                    np.testing.assert_array_equal(x1[k], x2[k], err_msg=k)
            else:
                np.testing.assert_array_equal(x1, x2)


def checker_warnings(caught):
    return [str(w.message) for w in caught if not any(b in str(w.message) for b in BENIGN)]


@pytest.fixture
def id_kwargs(tmp_path, monkeypatch):
    """Tiny kwargs for each registered id; CIFAR-10 and Fashion-MNIST from small files
    written in their own formats, digits cached (scikit-learn's loader is the slow part)."""
    write_cifar10(tmp_path, n_per_file=8)
    write_fashion_mnist(tmp_path / "FashionMNIST" / "raw", n_train=40, n_test=8)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    monkeypatch.setattr(digits, "load", _cached_digits)
    tiny = {k: v for k, v in TINY.items() if k != "dataset"}
    return {
        "patchenv/PatchSelection-v1": dict(TINY),
        "patchenv/CIFAR10-v1": dict(tiny, data_root=tmp_path),
        "patchenv/FashionMNIST-v1": dict(tiny, data_root=tmp_path),
        "patchenv/Digits-v1": tiny,
    }


_cached_digits = functools.lru_cache(digits.load)


# -- registration and the checkers ----------------------------------------------------------
def test_ids_registered_with_their_datasets(id_kwargs):
    expected = {"patchenv/PatchSelection-v1": "cifar10", "patchenv/CIFAR10-v1": "cifar10",
                "patchenv/FashionMNIST-v1": "fashion_mnist", "patchenv/Digits-v1": "digits"}
    for env_id in IDS:
        spec = gym.spec(env_id)
        assert spec.entry_point == "patchenv.env:PatchSelectionEnv"
        env = gym.make(env_id, **id_kwargs[env_id])
        want = "synthetic" if env_id == "patchenv/PatchSelection-v1" else expected[env_id]
        assert env.unwrapped.dataset_name == want
    # The generic id's defaults are the paper's CIFAR-10 setup.
    assert gym.spec("patchenv/PatchSelection-v1").kwargs == {}
    defaults = {name: p.default for name, p in inspect.signature(PatchSelectionEnv).parameters.items()}
    paper = dict(dataset="cifar10", batch_size=128, patch_size=4, dim=128, depth=6, heads=16, dim_head=64,
                 mlp_dim=512, lr=1e-3, loss_weight=1.0, patch_weight=20.0, n_patch_desired=30, selection="batch")
    assert {k: defaults[k] for k in paper} == paper  # docs/AGENTVIT.md


@pytest.mark.parametrize("obs_type", OBS_TYPES)
@pytest.mark.parametrize("selection", SELECTIONS)
@pytest.mark.parametrize("env_id", IDS)
def test_gymnasium_check_env(env_id, selection, obs_type, id_kwargs):
    env = gym.make(env_id, **id_kwargs[env_id], selection=selection, obs_type=obs_type)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped, skip_render_check=True)
        if env_id == "patchenv/PatchSelection-v1":
            check_env(env, skip_render_check=True)  # through gym.make's wrappers as well
    assert checker_warnings(caught) == []


@pytest.mark.parametrize("selection", SELECTIONS)
def test_sb3_check_env_pooled(selection):
    env = gym.make("patchenv/PatchSelection-v1", **TINY, selection=selection, obs_type="pooled")
    if selection == "image":
        env = FlattenMultiBinaryAction(env)
        assert env.action_space.shape == (B * N,)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(env, warn=True)
    assert checker_warnings(caught) == []


def test_flatten_wrapper_passes_the_same_mask():
    acts = masks("image", 3, seed=1)
    flat = FlattenMultiBinaryAction(make(selection="image", obs_type="pooled"))
    plain = make(selection="image", obs_type="pooled")
    r_flat = rollout(flat, [a.reshape(-1) for a in acts], seed=2)
    assert_same_rollout(r_flat, rollout(plain, acts, seed=2))
    np.testing.assert_array_equal(r_flat[1][4]["kept_per_image"], acts[0].sum(1))


# -- configuration and documentation ---------------------------------------------------------------
def test_constructor_arguments_are_the_config_fields():
    """PatchSelectionEnv(**kwargs) takes exactly EnvConfig's fields, keyword only, with
    its defaults; each one is accepted and lands in env.config."""
    params = dict(inspect.signature(PatchSelectionEnv).parameters)
    assert params.pop("preset").default is None  # a name for some of the fields, not a field
    assert list(params) == [f.name for f in fields(EnvConfig)]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
    assert {n: p.default for n, p in params.items()} == {f.name: f.default for f in fields(EnvConfig)}
    given = dict(TINY, data_root=None, download=False, image_size=None, lr=1e-3, selection="image",
                 obs_type="pooled", alpha=None,
                 loss_weight=2.0, patch_weight=3.0, n_patch_desired=20, episode_steps=5, reward_fn=None,
                 tensor_obs=False, amp=None, compile=False, cuda_graph=False, eval_batch_size=40, loss_ref_step=3,
                 action_repeat=2,
                 eval_fraction=0.5, val_fraction=0.25, render_mode=None,
                 budget_epochs=None, reward="progress", probe_size=30, probe_every=4)
    assert set(given) == set(params)
    env = PatchSelectionEnv(**given)
    assert env.config == EnvConfig(**given)
    assert (env.selection, env.obs_type, env.n_patch_desired, env.episode_steps) == ("image", "pooled", 20, 5)
    assert (env.loss_weight, env.patch_weight, env.eval_batch_size) == (2.0, 3.0, 40)
    # What agents and benchmarks read stays on the env, with the values the settings imply:
    # synthetic() has 2048 training images, 25% held out leaves 1536, 96 batches of 16; 32x32
    # images in 4-px patches are 64 patches.
    assert (env.batch_size, env.num_patches, env.steps_per_epoch, env.lr, env.alpha) == (16, 64, 96, 1e-3, None)
    assert (env.amp, env.compile, env.tensor_obs, env.dataset_name, env.device) == (
        None, False, False, "synthetic", torch.device("cpu"))
    assert env.vit_config == dict(image_size=32, patch_size=4, num_classes=10, channels=3, dim=32, depth=2,
                                  heads=2, dim_head=16, mlp_dim=64)
    assert (env.train_time_s, env.last_step_time_s, env.epoch, env.global_step) == (0.0, 0.0, 0, 0)
    assert env.model is None and env.optimizer is None  # a run starts at reset()
    env.reset(seed=0)
    assert isinstance(env.optimizer, torch.optim.Adam) and env.optimizer.param_groups[0]["lr"] == 1e-3


def test_a_preset_fills_in_the_fields_not_given():
    env = gym.make("patchenv/PatchSelection-v1", preset="tiny", dataset="synthetic", device="cpu", dim=64)
    cfg = env.unwrapped.config
    assert (cfg.dim, cfg.depth, cfg.heads, cfg.dim_head, cfg.mlp_dim, cfg.batch_size) == (64, 2, 2, 16, 64, 16)
    assert cfg.dataset == "synthetic"
    with pytest.raises(ValueError, match=r"preset must be one of \['paper', 'small', 'tiny'\] or None, got 'huge'"):
        gym.make("patchenv/Digits-v1", preset="huge")


def test_bad_arguments_give_one_line_errors():
    for kwargs, word in ((dict(dim=0), "dim"), (dict(lr="fast"), "lr"), (dict(n_patch_desired=64), "63"),
                         (dict(batch_size=5000), "5000"), (dict(patch_size=5), "patch_size")):
        with pytest.raises(ValueError, match=word) as e:
            make(**kwargs)
        assert "\n" not in str(e.value)
    with pytest.raises(TypeError, match="did you mean 'batch_size'"):
        make(batchsize=8)  # a misspelt name: Python's TypeError, with the likely meaning
    with pytest.raises(TypeError, match="batchsize"):
        gym.make("patchenv/PatchSelection-v1", **TINY, batchsize=8)


def test_docstring_is_the_contract():
    sections = ("Description", "Action Space", "Observation Space", "Rewards", "Starting State", "Episode End",
                "Arguments", "Version History")
    for doc in (pydoc.render_doc(PatchSelectionEnv, renderer=pydoc.plaintext),
                pydoc.render_doc(gym.make("patchenv/PatchSelection-v1", **TINY).unwrapped, renderer=pydoc.plaintext)):
        for section in sections:
            assert section in doc, section
        assert "EnvConfig" in doc and "n_patch_desired: 'int' = 30" in doc  # the signature, with defaults


# -- spaces and observations ---------------------------------------------------------------
@pytest.mark.parametrize("selection,action_shape", [("batch", (N,)), ("image", (B, N))])
@pytest.mark.parametrize("obs_type,obs_shape", [("embeddings", (B, N, D)), ("pooled", (N, D)), ("attention", (B, N))])
def test_spaces(selection, action_shape, obs_type, obs_shape):
    env = gym.make("patchenv/PatchSelection-v1", **TINY, selection=selection, obs_type=obs_type)
    assert isinstance(env.action_space, gym.spaces.MultiBinary) and env.action_space.shape == action_shape
    assert isinstance(env.observation_space, gym.spaces.Box) and env.observation_space.shape == obs_shape
    assert env.observation_space.dtype == np.float32
    obs, _ = env.reset(seed=0)
    step_obs, _, _, _, info = env.step(env.action_space.sample())
    for o in (obs, step_obs):
        assert isinstance(o, np.ndarray) and o.dtype == np.float32 and o.shape == obs_shape
        assert o in env.observation_space and np.isfinite(o).all()
    # info: the documented keys, no wall-clock values (those live on the env).
    keys = {"loss", "accuracy", "kept", "tokens", "padding_tokens", "epoch", "global_step", "loss_term",
            "patch_term", "diverged", "flops", "probe_flops"} | ({"kept_per_image"} if selection == "image" else set())
    assert set(info) == keys
    assert env.unwrapped.train_time_s >= env.unwrapped.last_step_time_s > 0


def test_observations_are_what_they_claim():
    """pooled = batch mean of the embeddings; attention = the first block's attention
    output averaged over D; embeddings = patch embedding + position embedding of the batch."""
    e, p, a = (make(obs_type=t) for t in OBS_TYPES)
    obs_e, obs_p, obs_a = (env.reset(seed=4)[0] for env in (e, p, a))
    np.testing.assert_allclose(obs_p, obs_e.mean(0), rtol=1e-5, atol=1e-6)
    env = e.unwrapped
    with torch.no_grad():
        tokens = env.model.embed(env.run.batch_x)
        np.testing.assert_array_equal(obs_e, tokens.numpy())
        attn = env.model.transformer.layers[0][0]
        np.testing.assert_allclose(obs_a, attn(tokens).mean(-1).numpy(), rtol=1e-4, atol=1e-5)
    # The same after a training step (computed from the updated weights).
    act = np.ones(N, np.int8)
    obs_e, obs_a = e.step(act)[0], a.step(act)[0]
    with torch.no_grad():
        np.testing.assert_allclose(obs_a, attn(torch.from_numpy(obs_e)).mean(-1).numpy(), rtol=1e-4, atol=1e-5)


def test_tensor_obs_on_the_device():
    t, n = make(tensor_obs=True, obs_type="pooled"), make(obs_type="pooled")
    obs_t, obs_n = t.reset(seed=1)[0], n.reset(seed=1)[0]
    assert isinstance(obs_t, torch.Tensor) and obs_t.device == t.device and obs_t.dtype == torch.float32
    np.testing.assert_array_equal(obs_t.numpy(), obs_n)
    np.testing.assert_array_equal(t.step(np.ones(N))[0].numpy(), n.step(np.ones(N))[0])


def test_tensor_obs_gymnasium_check_env_refuses_in_one_line():
    """Gymnasium's check_env compares observations as numpy; a tensor_obs env refuses it
    clearly (before Gymnasium's own comparison would fail), through wrappers too. Its
    numpy twin (tensor_obs=False) is the one check_env passes (test_gymnasium_check_env)."""
    for env in (make(tensor_obs=True, obs_type="pooled"),
                gym.make("patchenv/PatchSelection-v1", tensor_obs=True, obs_type="pooled", **TINY)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the unbounded Box's warnings, not under test here
            with pytest.raises(TypeError, match="tensor_obs=False") as e:
                check_env(env, skip_render_check=True)
        assert "check_env" in str(e.value) and "\n" not in str(e.value)
    obs, _ = env.reset(seed=0)  # outside the checker the env works as before
    assert isinstance(obs, torch.Tensor)


def test_tensor_obs_space_holds_tensors():
    env = make(tensor_obs=True, obs_type="pooled")
    space = env.observation_space
    obs, _ = env.reset(seed=0)
    assert obs in space and obs.numpy() in space  # numpy is still checked as Box checks it
    assert torch.full((N, D), float("nan")) not in space
    assert obs.double() not in space and obs[:-1] not in space
    sample = space.sample()
    assert isinstance(sample, torch.Tensor) and sample.device == env.device and sample in space


def test_tensor_obs_sync_vector_env_stacks_tensors_like_the_numpy_one():
    """make_vec(sync) of tensor_obs envs: (num_envs, N, D) tensors on the device, equal
    to the numpy vector env's observations step by step, across an autoreset."""
    kwargs = dict(TINY, obs_type="pooled", episode_steps=2)
    tv = gym.make_vec("patchenv/PatchSelection-v1", num_envs=2, vectorization_mode="sync", tensor_obs=True, **kwargs)
    nv = gym.make_vec("patchenv/PatchSelection-v1", num_envs=2, vectorization_mode="sync", **kwargs)
    obs_t, _ = tv.reset(seed=[3, 4])
    obs_n, _ = nv.reset(seed=[3, 4])
    assert isinstance(obs_t, torch.Tensor) and obs_t.shape == (2, N, D) and obs_t.device == torch.device("cpu")
    assert obs_t in tv.observation_space and tv.observation_space.shape == (2, N, D)
    np.testing.assert_array_equal(obs_t.numpy(), obs_n)
    assert not np.array_equal(obs_n[0], obs_n[1])  # two runs, two seeds
    rng = np.random.default_rng(0)
    for _ in range(4):  # episode_steps=2: both sub-envs autoreset on the way
        action = (rng.random((2, N)) < 0.5).astype(np.int8)
        action[:, 0] = 1
        t, n = tv.step(action), nv.step(action)
        assert isinstance(t[0], torch.Tensor)
        np.testing.assert_array_equal(t[0].numpy(), n[0])
        for got, want in zip(t[1:4], n[1:4]):
            np.testing.assert_array_equal(got, want)
    tv.close()
    nv.close()


def test_tensor_obs_async_vector_env_is_refused_in_one_line():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="vectorization_mode='sync'") as e:
            gym.make_vec("patchenv/PatchSelection-v1", num_envs=2, vectorization_mode="async", tensor_obs=True,
                         obs_type="pooled", **TINY)
    assert "tensor_obs=False" in str(e.value) and "\n" not in str(e.value)


# -- seeding and episodes ------------------------------------------------------------------------
@pytest.mark.parametrize("selection,obs_type", [("batch", "embeddings"), ("image", "attention")])
def test_same_seed_same_rollout_different_seed_differs(selection, obs_type):
    acts = masks(selection, 4, seed=3)
    r1 = rollout(make(selection=selection, obs_type=obs_type), acts, seed=11)
    r2 = rollout(make(selection=selection, obs_type=obs_type), acts, seed=11)
    assert_same_rollout(r1, r2)
    r3 = rollout(make(selection=selection, obs_type=obs_type), acts, seed=12)
    assert not np.array_equal(r1[0][0], r3[0][0])
    assert [s[1] for s in r1[1:]] != [s[1] for s in r3[1:]]
    # reset(seed) on a used env starts the same fresh run again.
    env = make(selection=selection, obs_type=obs_type)
    rollout(env, acts[:2], seed=5)
    assert_same_rollout(rollout(env, acts, seed=11), r1)


def test_seeding_does_not_touch_global_torch_rng():
    torch.manual_seed(0)
    want = torch.rand(3)
    torch.manual_seed(0)
    env = make()
    env.reset(seed=1)
    env.step(np.ones(N))
    env.evaluate()
    env.reset(options={"new_run": True})
    assert torch.equal(torch.rand(3), want)


def test_reset_without_seed_continues_the_run():
    acts = masks("batch", 6, seed=4)
    short = make(episode_steps=3)
    long = make(episode_steps=6)
    r_long = rollout(long, acts, seed=9)
    r_short = rollout(short, acts[:3], seed=9)
    assert r_short[-1][3] is True and r_short[-1][2] is False  # truncated after 3 steps
    obs, info = short.reset()
    assert info["global_step"] == 3
    np.testing.assert_array_equal(obs, r_long[3][0])  # the pending batch of the same run
    for i, a in enumerate(acts[3:], start=4):
        step = short.step(a)
        np.testing.assert_array_equal(step[0], r_long[i][0])
        assert step[1] == r_long[i][1] and step[4] == r_long[i][4]
    assert step[4]["global_step"] == 6 and step[3] is True
    # An option forces a fresh run: counters restart and the loss reference is retaken.
    before = [p.detach().clone() for p in short.model.parameters()]
    obs, info = short.reset(options={"new_run": True})
    assert info == {"epoch": 0, "global_step": 0}
    assert not all(torch.equal(p, q) for p, q in zip(before, short.model.parameters()))
    step = short.step(acts[0])
    assert step[4]["global_step"] == 1 and step[4]["loss_term"] == 1.0


def test_epochs_and_dropped_last_batch():
    """40 training images, batch 16: an epoch is 2 steps (8 images dropped); episodes of
    one epoch by default; reset() goes on to the next epoch with a new order."""
    env = make(dataset=data.synthetic(n_train=40, n_test=8))
    assert env.steps_per_epoch == 2 and env.episode_steps == 2
    perms = []
    env.reset(seed=0)
    for epoch in range(3):
        if epoch:
            env.reset()
        perms.append(env.run.perm.clone())
        for i in range(2):
            assert torch.equal(env.run.batch_y, env.data.train_y[perms[-1][16 * i:16 * (i + 1)]])
            obs, _, term, trunc, info = env.step(np.ones(N))
            assert obs.shape == (B, N, D) and info["epoch"] == epoch
        assert trunc and not term
    # Each epoch is a fresh permutation of the 40 images.
    assert all(sorted(p.tolist()) == list(range(40)) for p in perms)
    assert not torch.equal(perms[0], perms[1]) and not torch.equal(perms[1], perms[2])


def test_bf16_autocast_step():
    """amp="bf16": observations stay float32 in their space; the loss is close to fp32's."""
    acts = masks("image", 2, seed=9)
    r16 = rollout(make(amp="bf16", selection="image", obs_type="attention"), acts, seed=0)
    r32 = rollout(make(selection="image", obs_type="attention"), acts, seed=0)
    for s16, s32 in zip(r16[1:], r32[1:]):
        assert s16[0].dtype == np.float32 and np.isfinite(s16[0]).all()
        assert s16[4]["loss"] == pytest.approx(s32[4]["loss"], rel=0.05)
        assert s16[4]["tokens"] == s32[4]["tokens"]


# -- reward ------------------------------------------------------------------------------------
def expected_patch_term(kept, n_patch_desired=30):
    z, z_star = N - kept, N - n_patch_desired
    return -abs(z - z_star) / z_star


@pytest.mark.parametrize("weights", [dict(), dict(alpha=0.3), dict(loss_weight=2.5, patch_weight=0.5,
                                                                   n_patch_desired=20)])
def test_reward_formula_by_hand(weights):
    lw, pw = (weights["alpha"], 1 - weights["alpha"]) if "alpha" in weights else \
        (weights.get("loss_weight", 1.0), weights.get("patch_weight", 20.0))
    target = weights.get("n_patch_desired", 30)
    env = make(**weights)
    env.reset(seed=2)
    loss_ref = None
    for k in (64, 30, 10, 45, 1):
        a = np.zeros(N, np.int8)
        a[np.random.default_rng(k).permutation(N)[:k]] = 1
        _, reward, _, _, info = env.step(a)
        loss_ref = loss_ref if loss_ref is not None else info["loss"]
        lt, pt = loss_ref / info["loss"], expected_patch_term(k, target)
        assert info["kept"] == k
        assert info["loss_term"] == pytest.approx(lt, rel=1e-12)
        assert info["patch_term"] == pytest.approx(pt, rel=1e-12)
        assert reward == pytest.approx(lw * lt + pw * pt, rel=1e-12)
    assert env.reset(seed=2) and env.step(np.ones(N))[4]["loss_term"] == 1.0  # first step: L(ref)/L(ref)


def test_reward_reference_step_by_hand():
    """loss_ref_step=3: L(ref) is the third step's loss; steps 1 and 2 are their own
    reference (loss term 1); a fresh run waits for its own third step again."""
    env = make(loss_ref_step=3)
    for seed in (2, 4):
        env.reset(seed=seed)
        infos, rewards = [], []
        for a in masks("batch", 6, seed=seed):
            _, r, _, _, info = env.step(a)
            infos.append(info)
            rewards.append(r)
        losses = [info["loss"] for info in infos]
        want = [1.0, 1.0, 1.0] + [losses[2] / loss for loss in losses[3:]]
        assert [info["loss_term"] for info in infos] == pytest.approx(want, rel=1e-12)
        assert want[3] != pytest.approx(losses[0] / losses[3])  # not the first step's reference
        for info, r, lt in zip(infos, rewards, want):
            assert r == pytest.approx(lt + 20 * expected_patch_term(info["kept"]), rel=1e-12)


def test_reward_per_image_uses_mean_kept():
    env = make(selection="image")
    env.reset(seed=0)
    a = np.zeros((B, N), np.int8)
    counts = np.arange(1, B + 1) * 4  # 4, 8, ..., 64
    for i, c in enumerate(counts):
        a[i, :c] = 1
    _, reward, _, _, info = env.step(a)
    np.testing.assert_array_equal(info["kept_per_image"], counts)
    assert info["kept"] == counts.mean()
    assert reward == pytest.approx(1.0 + 20 * expected_patch_term(counts.mean()), rel=1e-12)


def test_custom_reward_fn_gets_the_step_statistics():
    seen = []

    def reward_fn(stats):
        seen.append(stats)
        return 10 * stats.accuracy - stats.kept / stats.num_patches + stats.loss_ref

    env = make(selection="image", reward_fn=reward_fn)
    env.reset(seed=3)
    infos, rewards = [], []
    for a in masks("image", 3, seed=5):
        _, r, _, _, info = env.step(a)
        infos.append(info)
        rewards.append(r)
    for stats, info, r in zip(seen, infos, rewards):
        assert (stats.loss, stats.accuracy, stats.kept) == (info["loss"], info["accuracy"], info["kept"])
        assert stats.loss_ref == infos[0]["loss"] and (stats.num_patches, stats.n_patch_desired) == (N, 30)
        assert (stats.loss_term, stats.patch_term) == (info["loss_term"], info["patch_term"])
        np.testing.assert_array_equal(stats.kept_per_image, info["kept_per_image"])
        assert r == pytest.approx(10 * info["accuracy"] - info["kept"] / N + infos[0]["loss"], rel=1e-12)


def test_step_is_one_adam_step_on_the_masked_batch():
    """info's loss/accuracy are those of the pending batch with the mask, and the weights
    move by exactly one Adam step (lr 1e-3) on that loss."""
    env = make(lr=1e-3)
    env.reset(seed=6)
    keep = np.zeros(N, bool)
    keep[::3] = True
    twin = copy.deepcopy(env.model)
    x, y = env.run.batch_x.clone(), env.run.batch_y.clone()
    logits = twin(x, torch.from_numpy(keep))
    loss = F.cross_entropy(logits, y)
    opt = torch.optim.Adam(twin.parameters(), lr=1e-3)
    opt.zero_grad()
    loss.backward()
    opt.step()
    info = env.step(keep.astype(np.int8))[4]
    assert info["loss"] == pytest.approx(float(loss.detach()), rel=1e-5)
    assert info["accuracy"] == float((logits.argmax(-1) == y).float().mean())
    for p, q in zip(env.model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)


# -- tokens: dropped tokens are gone ---------------------------------------------------------
@pytest.mark.parametrize("selection", SELECTIONS)
def test_tokens_count_what_the_transformer_ran_on(selection):
    env = make(selection=selection)
    env.reset(seed=0)
    lengths = []
    env.model.transformer.register_forward_hook(lambda m, args, out: lengths.append(tuple(args[0].shape)))
    rng = np.random.default_rng(0)
    cases = [64, 32, 8, 1] if selection == "batch" else ["equal", "uneven", "full", "one-each"]
    for case in cases:
        if selection == "batch":
            a = np.zeros(N, np.int8)
            a[rng.permutation(N)[:case]] = 1
            counts = np.full(B, case)
        else:
            counts = {"equal": np.full(B, 20), "uneven": rng.integers(1, 50, B), "full": np.full(B, 64),
                      "one-each": np.ones(B, int)}[case]
            a = np.zeros((B, N), np.int8)
            for i, c in enumerate(counts):
                a[i, rng.permutation(N)[:c]] = 1
        info = env.step(a)[4]
        longest = int(counts.max())
        assert lengths[-1] == (B, longest, D)  # the sequence really is shorter
        assert info["tokens"] == int(counts.sum()) <= B * info["kept"] + 1e-9
        assert info["tokens"] == pytest.approx(B * info["kept"])
        assert info["padding_tokens"] == B * longest - int(counts.sum())
        if selection == "batch" or case != "uneven":
            assert info["padding_tokens"] == 0
    assert len(lengths) == len(cases)  # one transformer pass per step: the observation reuses none


# -- evaluation ----------------------------------------------------------------------------------
def _manual_accuracy(env, keep=None):
    x = data.normalize(data.to_unit(env.data.test_x), env.setup.mean, env.setup.std)
    with torch.no_grad():
        logits = env.model(x, None if keep is None else torch.as_tensor(keep))
    return float((logits.argmax(-1) == env.data.test_y).float().mean()), float(F.cross_entropy(logits, env.data.test_y))


def test_evaluate_all_patches_and_fixed_masks():
    env = make(dataset=data.synthetic(n_train=64, n_test=40))  # 40: the last batch of 16 is partial
    env.reset(seed=0)
    for _ in range(3):
        env.step(np.ones(N))
    res = env.evaluate()
    acc, loss = _manual_accuracy(env)
    assert res["n"] == 40 and 0 <= res["accuracy"] <= 1
    assert res["accuracy"] == pytest.approx(acc) and res["loss"] == pytest.approx(loss, rel=1e-5)
    keep = np.zeros(N, np.int8)
    keep[5:40] = 1
    res = env.evaluate(masks=keep)
    acc, loss = _manual_accuracy(env, keep.astype(bool))
    assert res["n"] == 40 and res["accuracy"] == pytest.approx(acc) and res["loss"] == pytest.approx(loss, rel=1e-5)
    assert env.evaluate(split="train")["n"] == 64


def test_eval_fraction_evaluates_a_fixed_subset_of_the_test_split():
    """eval_fraction=0.75 of 40 test images: the 30 that randperm(40) from a generator
    seeded with EVAL_SUBSET_SEED puts first, the same in every run, seed and env; the
    numbers are the model's on those images, by hand. The train split stays whole."""
    from patchenv.data.splits import EVAL_SUBSET_SEED

    images = data.synthetic(n_train=64, n_test=40)
    env = make(dataset=images, eval_fraction=0.75)
    env.reset(seed=0)
    env.step(np.ones(N))
    idx = torch.randperm(40, generator=torch.Generator().manual_seed(EVAL_SUBSET_SEED))[:30].sort().values
    x = data.normalize(data.to_unit(env.data.test_x[idx]), env.setup.mean, env.setup.std)
    with torch.no_grad():
        logits = env.model(x)
    res = env.evaluate()
    assert res["n"] == 30
    assert res["accuracy"] == float((logits.argmax(-1) == env.data.test_y[idx]).sum()) / 30
    assert res["loss"] == pytest.approx(float(F.cross_entropy(logits, env.data.test_y[idx])), rel=1e-5)
    keep = np.zeros(N, np.int8)
    keep[:20] = 1
    with torch.no_grad():
        masked = env.model(x, torch.from_numpy(keep.astype(bool)))
    assert env.evaluate(masks=keep)["accuracy"] == float((masked.argmax(-1) == env.data.test_y[idx]).sum()) / 30
    assert env.evaluate(split="train")["n"] == 64
    # Fixed per data set: another run and seed evaluate the same images.
    other = make(dataset=images, eval_fraction=0.75)
    other.reset(seed=9)
    other.model.load_state_dict(env.model.state_dict())
    assert other.evaluate() == res
    # The default is the whole split; a fraction that keeps no image is refused.
    whole = make(dataset=images)
    whole.reset(seed=0)
    assert whole.evaluate()["n"] == 40
    with pytest.raises(ValueError, match="keeps no image of the 40-image test split"):
        make(dataset=images, eval_fraction=0.01)


def _image_bytes(x):
    return [bytes(img.numpy().tobytes()) for img in x]


def test_val_fraction_holds_out_a_fixed_validation_split():
    """val_fraction=0.1 of synthetic's 2048 training images: round(204.8) = 205 go to the
    validation split, the first of randperm(2048) seeded with VAL_SPLIT_SEED, the same
    whatever the run's seed; the rest, in their order, are the training set. Checked
    against the original arrays by image bytes (and labels)."""
    from patchenv.data.splits import VAL_SPLIT_SEED

    images = data.synthetic()  # TINY's data set, by hand: n_train=2048
    n = len(images.train_y)
    assert len(set(_image_bytes(images.train_x))) == n  # distinct images: bytes identify them
    env = make(val_fraction=0.1)
    val_x, val_y = env.setup.val
    k = round(0.1 * n)
    assert k == 205 and len(val_y) == k and len(env.data.train_y) == n - k
    assert env.steps_per_epoch == (n - k) // B and env.episode_steps == (n - k) // B
    # Disjoint, and together the original training set, labels following their images.
    original = dict(zip(_image_bytes(images.train_x), images.train_y.tolist()))
    train_b, val_b = _image_bytes(env.data.train_x), _image_bytes(val_x)
    assert not set(train_b) & set(val_b)
    assert sorted(train_b + val_b) == sorted(original)
    assert [original[b] for b in train_b] == env.data.train_y.tolist()
    assert [original[b] for b in val_b] == val_y.tolist()
    # Which images: the first k of the seeded permutation, kept in the data set's order.
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(VAL_SPLIT_SEED))
    torch.testing.assert_close(val_x, images.train_x[perm[:k].sort().values], rtol=0, atol=0)
    torch.testing.assert_close(env.data.train_x, images.train_x[perm[k:].sort().values], rtol=0, atol=0)
    # The test split and the normalisation are the data set's.
    torch.testing.assert_close(env.data.test_x, images.test_x, rtol=0, atol=0)
    assert env.setup.mean.flatten().tolist() == pytest.approx(images.mean)

    # evaluate("val"): the whole split, unaugmented, by hand.
    env.reset(seed=0)
    env.step(np.ones(N))
    res = env.evaluate(split="val")
    x = data.normalize(data.to_unit(val_x), env.setup.mean, env.setup.std)
    with torch.no_grad():
        logits = env.model(x)
    assert res["n"] == k == len(val_y)
    assert res["accuracy"] == float((logits.argmax(-1) == val_y).sum()) / k
    assert res["loss"] == pytest.approx(float(F.cross_entropy(logits, val_y)), rel=1e-5)
    assert env.evaluate(split="train")["n"] == n - k and env.evaluate()["n"] == len(images.test_y)
    # The same split in another env, whatever its reset seed.
    other = make(val_fraction=0.1)
    other.reset(seed=9)
    torch.testing.assert_close(other.setup.val[0], val_x, rtol=0, atol=0)
    torch.testing.assert_close(other.data.train_x, env.data.train_x, rtol=0, atol=0)
    other.model.load_state_dict(env.model.state_dict())
    assert other.evaluate(split="val") == res


def test_no_validation_split_by_default():
    images = data.synthetic(n_train=64, n_test=40)
    env = make(dataset=images)
    assert env.config.val_fraction == 0.0 and env.setup.val is None
    torch.testing.assert_close(env.data.train_x, images.train_x, rtol=0, atol=0)
    torch.testing.assert_close(env.data.train_y, images.train_y, rtol=0, atol=0)
    assert env.steps_per_epoch == 64 // B
    env.reset(seed=0)
    with pytest.raises(ValueError, match="split='val' needs a validation split: .*val_fraction") as e:
        env.evaluate(split="val")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="'test', 'val' or 'train'"):
        env.evaluate(split="validation")


def test_val_fraction_too_small_or_too_large_for_the_data():
    images = data.synthetic(n_train=64, n_test=40)
    with pytest.raises(ValueError, match="val_fraction 0.005 holds out no image of the 64-image training set"):
        make(dataset=images, val_fraction=0.005)
    with pytest.raises(ValueError, match="val_fraction 0.999 holds out every image"):
        make(dataset=images, val_fraction=0.999)
    # What is left must still fill a batch (B = 16): 64 - round(0.8 * 64) = 13 images.
    with pytest.raises(ValueError, match=r"batch_size 16 is larger than the training set \(13 images after the "
                                         r"validation split of 51\)"):
        make(dataset=images, val_fraction=0.8)


def test_val_fraction_is_in_the_checkpoint_fingerprint(tmp_path):
    images = data.synthetic(n_train=64, n_test=40)
    env = make(dataset=images, val_fraction=0.25)
    env.reset(seed=0)
    env.step(np.ones(N))
    env.save_checkpoint(tmp_path / "run.pt")
    with pytest.raises(ValueError, match=r"val_fraction 0.25 \(saved\) != None"):
        make(dataset=images).load_checkpoint(tmp_path / "run.pt")
    same = make(dataset=images, val_fraction=0.25)
    same.load_checkpoint(tmp_path / "run.pt")
    assert same.evaluate(split="val") == env.evaluate(split="val")


def test_evaluate_with_a_callable_selector():
    env = make(dataset=data.synthetic(n_train=64, n_test=40), selection="image", obs_type="attention")
    env.reset(seed=1)
    calls = []

    def selector(obs):  # keep each image's 20 patches of highest attention state
        calls.append(obs.copy())
        a = np.zeros((B, N), np.int8)
        np.put_along_axis(a, np.argsort(-obs, axis=1)[:, :20], 1, axis=1)
        return a

    res = env.evaluate(masks=selector)
    assert len(calls) == 3 and all(c.shape == (B, N) and c.dtype == np.float32 for c in calls)
    assert res["n"] == 40 and 0 <= res["accuracy"] <= 1
    # By hand: the selector on the attention state of each image, each image alone.
    x = data.normalize(data.to_unit(env.data.test_x), env.setup.mean, env.setup.std)
    with torch.no_grad():
        tokens = env.model.embed(x)
        state = env.model.transformer.layers[0][0](tokens).mean(-1).numpy()
        np.testing.assert_allclose(np.concatenate(calls)[:40], state, rtol=1e-4, atol=1e-5)
        keep = np.argsort(-np.concatenate(calls)[:40], axis=1)[:, :20]  # what the selector chose
        logits = torch.cat([env.model(x[i:i + 1], torch.from_numpy(keep[i])) for i in range(40)])
    assert res["accuracy"] == pytest.approx(float((logits.argmax(-1) == env.data.test_y).float().mean()))
    assert res["loss"] == pytest.approx(float(F.cross_entropy(logits, env.data.test_y)), rel=1e-4)


def test_evaluate_does_not_change_the_training_run():
    acts = masks("batch", 4, seed=8)
    plain = rollout(make(obs_type="pooled"), acts, seed=4)
    env = make(obs_type="pooled")
    with_eval = rollout(env, acts[:2], seed=4)
    first = env.evaluate()
    env.evaluate(masks=acts[0])
    env.evaluate(masks=lambda obs: np.ones(N), split="train")
    assert env.evaluate() == first
    with_eval += [env.step(a) for a in acts[2:]]
    assert_same_rollout(with_eval, plain)


# -- the offline digits setup ---------------------------------------------------------------------
def test_digits_trains_a_step_and_evaluates_offline(monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("the network was used")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(digits, "load", _cached_digits)
    tiny = {k: v for k, v in TINY.items() if k != "dataset"}
    env = gym.make("patchenv/Digits-v1", **tiny, obs_type="pooled")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (N, D)
    _, reward, term, trunc, info = env.step(np.ones(N))
    assert np.isfinite(reward) and not term and not trunc and info["tokens"] == B * N
    res = env.unwrapped.evaluate()
    assert res["n"] == 1797 // 5 and 0 <= res["accuracy"] <= 1
    assert env.unwrapped.steps_per_epoch == (1797 - 1797 // 5) // B


# -- torch.compile ------------------------------------------------------------------------------
def test_compiled_step_matches_the_eager_step():
    """compile=True: the same tokens, padding and (to float rounding) losses as eager mode,
    for a shared mask and uneven per-image masks (the padded path)."""
    for selection in SELECTIONS:
        compiled, eager = make(selection=selection, compile=True), make(selection=selection)
        compiled.reset(seed=0)
        eager.reset(seed=0)
        for a in masks(selection, 2, seed=1):
            got, want = compiled.step(a)[4], eager.step(a)[4]
            assert (got["tokens"], got["padding_tokens"]) == (want["tokens"], want["padding_tokens"])
            assert got["loss"] == pytest.approx(want["loss"], rel=1e-4)


def test_a_compiled_count_step_embeds_only_the_kept_patches_as_the_eager_one_does():
    """compile=True with the progress observation: the step embeds the kept patches only (its
    FLOPs are the eager step's, those of `step_flops` with the kept patches embedded), trains
    to the same losses at every count (dynamic shapes), keeps its token gradients for
    patch_credit(), and compiled when it was made: no step compiles (so no step's clock pays
    for it), one kept patch included."""
    from torch._dynamo.utils import counters

    kw = dict(selection="count", obs_type="progress", probe_every=1 << 40, val_fraction=0.1)  # no probe
    compiled, eager = make(compile=True, **kw), make(**kw)
    for env in (compiled, eager):
        env.reset(seed=0)
    frames = dict(counters["frames"])
    vit = compiled.unwrapped.vit_config
    for k in (8, 3, 64, 8, 20, 1):
        got, want = compiled.step(k - 1)[4], eager.step(k - 1)[4]  # action a keeps a + 1 patches
        kept_only = step_flops(vit, B, k, embedded=k)["total"]
        assert got["flops"] == want["flops"] and got["flops"] - got["probe_flops"] == kept_only, k
        assert k == N or kept_only < step_flops(vit, B, k)["total"]
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-4), k
        credit = compiled.patch_credit()
        assert torch.equal((credit > 0).sum(dim=1), torch.full((B,), k)), k  # the kept patches have credit
        assert torch.allclose(credit, eager.patch_credit(), rtol=1e-3, atol=1e-7), k
    assert dict(counters["frames"]) == frames


@pytest.mark.filterwarnings("ignore:.*is out of date.*:DeprecationWarning")  # Gymnasium's, before it refuses
def test_the_first_release_ids_are_refused_naming_v1():
    """v1 is what v0 became (other head, new settings and info): a v0 id is refused, not
    silently given the other experiment."""
    for name in ("PatchSelection", "CIFAR10", "FashionMNIST", "Digits", "Imagenette"):
        assert f"patchenv/{name}-v1" in gym.registry
        with pytest.raises(gym.error.DeprecatedEnv, match=f"Please use `patchenv/{name}-v1` instead"):
            gym.make(f"patchenv/{name}-v0")

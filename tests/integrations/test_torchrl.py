"""patchenv.integrations.torchrl: the device is patchenv's, every selection mode's action
spec converts and steps the env, and the info read through TorchRL's reader equals what
the Gymnasium env returns for the same seed and actions."""
import gymnasium as gym
import numpy as np
import pytest
import torch

torchrl = pytest.importorskip("torchrl", reason="torchrl is not installed (pip install -e \".[integrations]\")")
from torchrl.envs import GymEnv, default_info_dict_reader  # noqa: E402
from torchrl.envs.utils import check_env_specs  # noqa: E402

from patchenv.integrations.info import INFO_DTYPES, TypedInfo, typed  # noqa: E402
from patchenv.integrations.torchrl import make_env  # noqa: E402

KW = dict(preset="tiny", episode_steps=6)
MODES = {"count": {}, "batch": {"obs_type": "pooled"}, "image": {"obs_type": "attention"}}


def test_device_is_patchenvs_and_torchrl_follows_it():
    env = make_env("patchenv/Digits-v1", device="cpu", **KW)
    assert env._env.unwrapped.config.device == "cpu" and env.device == torch.device("cpu")
    # What make_env avoids: TorchRL's GymEnv keeps `device` and patchenv gets "auto".
    plain = GymEnv("patchenv/Digits-v1", device="cpu", **KW)
    assert plain._env.unwrapped.config.device == "auto"


@pytest.mark.parametrize("selection", sorted(MODES))
def test_every_selection_converts_and_the_action_reaches_the_env(selection):
    keys = ["loss", "kept", "tokens", "diverged", "epoch", "global_step"]
    keys += ["kept_per_image"] if selection == "image" else []
    env = make_env("patchenv/Digits-v1", device="cpu", selection=selection, info_keys=keys, **KW, **MODES[selection])
    space = env._env.unwrapped.action_space
    assert tuple(env.action_spec.shape) == ((space.n,) if selection == "count" else space.shape)
    check_env_specs(env)
    td = env.rollout(5)
    action = td["action"].numpy()
    # Patches kept per image, from the action in the rollout (count: one-hot index + 1).
    if selection == "count":
        counts = action.argmax(-1) + 1
    else:
        counts = action.reshape(5, -1, action.shape[-1]).sum(-1).mean(-1)
    np.testing.assert_allclose(td["next", "kept"].numpy(), counts)
    batch = env._env.unwrapped.batch_size
    if selection == "image":
        np.testing.assert_array_equal(td["next", "kept_per_image"].numpy(), action.sum(-1))
        assert td["next", "kept_per_image"].dtype == torch.int64
    np.testing.assert_array_equal(td["next", "tokens"].numpy(), np.rint(counts * batch).astype(np.int64))
    assert td["next", "loss"].dtype == torch.float64 and td["next", "diverged"].dtype == torch.bool
    assert not td["next", "diverged"].any()
    assert np.diff(td["next", "global_step"].numpy()).tolist() == [1] * 4


def test_the_info_read_through_torchrls_default_reader_is_the_envs():
    """The issue's call, default_info_dict_reader(["loss", "kept", "tokens"]) without specs,
    against the Gymnasium env stepped with the same seed and actions."""
    env = make_env("patchenv/Digits-v1", device="cpu", selection="batch", obs_type="pooled", **KW)
    env.set_info_dict_reader(default_info_dict_reader(["loss", "kept", "tokens"]))
    ref = gym.make("patchenv/Digits-v1", device="cpu", selection="batch", obs_type="pooled", **KW)
    env.set_seed(5)
    ref.reset(seed=5)
    td = env.reset()
    obs, _ = ref.reset()
    np.testing.assert_allclose(td["observation"].numpy(), obs)
    rng = np.random.default_rng(0)
    for _ in range(4):
        mask = (rng.random(64) < 0.5).astype(np.int8)
        mask[0] = 1
        out = env.step(td.set("action", torch.from_numpy(mask)))["next"]
        obs, reward, _, _, info = ref.step(mask)
        np.testing.assert_allclose(out["observation"].numpy(), obs, rtol=1e-5, atol=1e-6)
        assert out["reward"].item() == pytest.approx(reward, rel=1e-6)
        assert out["loss"].item() == pytest.approx(info["loss"], rel=1e-6)
        assert out["kept"].item() == mask.sum() and out["tokens"].item() == mask.sum() * 16 == info["tokens"]
        td = out


def test_typed_info_keeps_the_values_and_the_checkers_pass():
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = TypedInfo(gym.make("patchenv/Digits-v1", device="cpu", selection="image", obs_type="attention", **KW))
    check_env(env, skip_render_check=True)
    sb3_check_env(env.unwrapped, warn=False)  # the wrapper changes no space; SB3 reads the info as a dict
    env.reset(seed=0)
    info = env.step(np.ones(env.action_space.shape, dtype=np.int8))[4]
    plain = gym.make("patchenv/Digits-v1", device="cpu", selection="image", obs_type="attention", **KW)
    plain.reset(seed=0)
    raw = plain.step(np.ones(plain.action_space.shape, dtype=np.int8))[4]
    assert set(info) == set(raw) and set(raw) <= set(INFO_DTYPES)
    for key, value in raw.items():
        assert info[key].dtype == INFO_DTYPES[key], key
        assert np.asarray(value).dtype == INFO_DTYPES[key], key  # the table is the env's own dtypes
        np.testing.assert_array_equal(info[key], value)
    assert float(info["loss"]) == raw["loss"] and int(info["flops"]) == raw["flops"] and not info["diverged"]
    assert typed({"epoch": 2})["epoch"].dtype == np.int64


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_machine_the_vit_trains_where_device_says():
    on_cpu = make_env("patchenv/Digits-v1", device="cpu", **KW)
    on_cpu.rollout(2)
    assert all(p.device.type == "cpu" for p in on_cpu._env.unwrapped.model.parameters())
    plain = GymEnv("patchenv/Digits-v1", device="cpu", **KW)  # what make_env avoids: "auto" picks CUDA
    plain.rollout(2)
    assert next(plain._env.unwrapped.model.parameters()).device.type == "cuda"
    on_gpu = make_env("patchenv/Digits-v1", device="cuda", info_keys=["loss"], **KW)
    td = on_gpu.rollout(2)
    assert next(on_gpu._env.unwrapped.model.parameters()).device.type == "cuda"
    assert td["observation"].device.type == td["next", "loss"].device.type == "cuda"


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(ValueError, match="patchenv ids"):
        make_env("CartPole-v1")
    with pytest.raises(ValueError, match="unknown info key 'los'"):
        make_env("patchenv/Digits-v1", device="cpu", info_keys=["los"], **KW)

"""action_repeat=k (Gymnasium/ALE's frameskip): one env.step is k training steps with the
same action, exactly as k single steps: the same losses and observations, the rewards
summed, the last step's info with the tokens and FLOPs summed; it stops at the episode's
end. The runner counts the training steps."""
import gymnasium as gym
import numpy as np
import pytest

from tiny_env import TINY
from patchenv.registry import make_from_spec
from patchenv.run import Budget, run_training

SMALL = dict(TINY, episode_steps=5)


def pair(selection="batch", **kwargs):
    single = gym.make("patchenv/PatchSelection-v1", **SMALL, selection=selection, **kwargs)
    repeat = gym.make("patchenv/PatchSelection-v1", **SMALL, selection=selection, action_repeat=3, **kwargs)
    single.reset(seed=4)
    repeat.reset(seed=4)
    return single, repeat


@pytest.mark.parametrize("selection, action", [("batch", np.r_[np.ones(20), np.zeros(44)].astype(np.int8)),
                                               ("count", 15)])
def test_one_repeated_step_is_k_single_steps(selection, action):
    single, repeat = pair(selection)
    rewards, infos = [], []
    for _ in range(3):
        obs, reward, terminated, truncated, info = single.step(action)
        rewards.append(reward)
        infos.append(info)
    r_obs, r_reward, r_term, r_trunc, r_info = repeat.step(action)
    assert np.array_equal(r_obs, obs) and (r_term, r_trunc) == (terminated, truncated)
    assert r_reward == pytest.approx(sum(rewards), rel=1e-12)
    assert r_info["steps"] == 3 and r_info["loss"] == infos[-1]["loss"] and r_info["global_step"] == 3
    for key in ("tokens", "flops", "padding_tokens", "probe_flops"):
        assert r_info[key] == sum(i[key] for i in infos), key
    assert r_info["tokens"] == 3 * 16 * (20 if selection == "batch" else 16)  # 3 steps x B images x kept


def test_a_repeat_stops_where_the_episode_ends():
    single, repeat = pair()
    mask = np.ones(64, dtype=np.int8)
    assert repeat.step(mask)[4]["steps"] == 3
    *_, truncated, info = repeat.step(mask)  # 5-step episodes: 2 steps left
    assert truncated and info["steps"] == 2 and repeat.unwrapped.global_step == 5


def test_the_runner_counts_training_steps_under_action_repeat(tmp_path):
    agent = make_from_spec("random:k=20", seed=0)
    env = gym.make("patchenv/PatchSelection-v1", **{**TINY, **agent.env_kwargs(), "action_repeat": 4})
    m = run_training(env, agent, tmp_path / "r", budget=Budget(epochs=2), show_progress=False)
    spe = env.unwrapped.steps_per_epoch
    assert env.unwrapped.global_step == 2 * spe and m["summary"]["steps"] == 2 * spe
    assert [row["global_step"] for row in m["epochs"]] == [spe, 2 * spe]
    assert m["summary"]["mean_patches_kept"] == 20.0
    assert sum(m["summary"]["patch_keep_frequency"]) == pytest.approx(20.0)  # 20 of 64 kept per image


def test_action_repeat_is_a_positive_integer():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="action_repeat must be an integer >= 1"):
            gym.make("patchenv/PatchSelection-v1", **TINY, action_repeat=bad)

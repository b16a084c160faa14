"""examples/ppo_population.py (CleanRL-style PPO on the population env): its GAE against
the definition, and a tiny run across autoreset steps, counted from the episode length."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("tensorboard", reason="the example logs to TensorBoard (pip install tensorboard)")

PATH = Path(__file__).resolve().parents[2] / "examples" / "ppo_population.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("ppo_population", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_advantages_are_the_discounted_sums_of_td_errors_within_an_episode(example):
    rng = np.random.default_rng(0)
    T, E, gamma, lam = 12, 3, 0.9, 0.8
    rewards, values, next_value = rng.normal(size=(T, E)), rng.normal(size=(T, E)), rng.normal(size=E)
    terminated = rng.random((T, E)) < 0.15
    done = terminated | (rng.random((T, E)) < 0.15)
    expected = np.zeros((T, E))
    for i in range(E):
        after = np.append(values[1:, i], next_value[i])
        delta = rewards[:, i] + gamma * after * ~terminated[:, i] - values[:, i]
        for t in range(T):
            for k in range(t, T):  # A_t = sum over the rest of the episode of (gamma lam)^(k - t) delta_k
                expected[t, i] += (gamma * lam) ** (k - t) * delta[k]
                if done[k, i]:
                    break
    f = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    got = example.advantages(f(rewards), f(values), f(next_value).reshape(1, -1), f(terminated), f(done), gamma, lam)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_a_tiny_run_crosses_autoreset_steps_and_logs_through_the_mask(example, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = example.main(["--num-envs", "2", "--num-steps", "16", "--total-timesteps", "64", "--episode-steps", "8",
                        "--env-device", "cpu", "--log-dir", str(tmp_path)])
    # Each run: 8 trained steps, then its autoreset step; 32 steps = 3 * 9 + 5.
    assert (out["global_step"], out["trained_steps"], out["autoreset_steps"]) == (64, 58, 6)
    events = EventAccumulator(out["log_dir"]).Reload()
    loss = events.Scalars("patchenv/loss")
    # Both runs reset on the same 3 steps, whose info has no "loss" at all: 29 of 32 steps log it.
    assert len(loss) == 29 and all(np.isfinite(e.value) and e.value > 0 for e in loss)
    assert [e.step for e in events.Scalars("charts/episodic_return")] == [16, 16, 34, 34, 52, 52]
    assert len(out["test_accuracy"]) == 2 and all(0.0 <= a <= 1.0 for a in out["test_accuracy"])


def test_bad_arguments_are_one_line_errors(example, capsys):
    with pytest.raises(SystemExit):
        example.parse_args(["--num-envs", "0"])
    assert "--num-envs must be >= 1, got 0" in capsys.readouterr().err


def test_the_population_and_the_sync_vector_env_give_the_same_info_keys_and_masks():
    """What a CleanRL loop reads, across an autoreset step on which both runs reset (the
    info then has no "loss"): the same keys, masks and dtypes, numbers to float32 precision."""
    import gymnasium as gym

    kw = dict(num_envs=2, preset="tiny", selection="count", episode_steps=3, device="cpu")
    envs = [gym.make_vec("patchenv/Digits-v1", vectorization_mode=mode, **kw)
            for mode in ("vector_entry_point", "sync")]
    for env in envs:
        env.reset(seed=0)
    for t in range(5):
        (_, r0, _, tr0, i0), (_, r1, _, tr1, i1) = (env.step(np.array([5, 9])) for env in envs)
        assert sorted(i0) == sorted(i1) and ("loss" in i0) == (t != 3)
        for key in i0:
            assert i0[key].dtype == i1[key].dtype, key
            np.testing.assert_allclose(i0[key], i1[key], rtol=1e-5, err_msg=key)
        np.testing.assert_allclose(r0, r1, rtol=1e-5)
        assert tr0.tolist() == tr1.tolist() == [t == 2] * 2

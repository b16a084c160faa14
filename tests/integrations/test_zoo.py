"""RL Baselines3 Zoo with patchenv's hyperparameter modules: train (with evaluation),
save and replay through Zoo's own entry points, a few hundred tiny-preset steps each."""
import sys

import numpy as np
import pytest

pytest.importorskip("rl_zoo3", reason="rl_zoo3 is not installed (pip install -e \".[integrations]\")")
from rl_zoo3.enjoy import enjoy  # noqa: E402
from rl_zoo3.train import train  # noqa: E402
from stable_baselines3 import A2C, DQN, PPO  # noqa: E402

from patchenv.integrations.zoo import IDS, a2c, dqn, ppo  # noqa: E402

ENV_KWARGS = ["--env-kwargs", "preset:'tiny'", "selection:'count'", "episode_steps:16", "device:'cpu'"]


def zoo(entry, monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["rl_zoo3", *args])
    entry()


def test_every_module_covers_every_id_with_a_budget_of_training_steps():
    for module in (ppo, a2c, dqn):
        assert set(module.hyperparams) == set(IDS)
        for settings in module.hyperparams.values():
            assert settings["n_timesteps"] <= 4096 and settings["env_kwargs"]["preset"] == "tiny"
    assert ppo.hyperparams["patchenv/Digits-v1"]["n_steps"] * 32 == ppo.hyperparams["patchenv/Digits-v1"]["n_timesteps"]


def test_a_run_leaves_the_module_as_it_was(tmp_path, monkeypatch):
    before = ppo.hyperparams["patchenv/Digits-v1"]
    zoo(train, monkeypatch, "--algo", "ppo", "--env", "patchenv/Digits-v1", "--gym-packages", "patchenv",
        "-conf", "patchenv.integrations.zoo.ppo", "-n", "32", "-params", "n_steps:32", "-f", str(tmp_path), *ENV_KWARGS)
    assert ppo.hyperparams["patchenv/Digits-v1"] == before and before["n_steps"] == 64


def test_ppo_trains_evaluates_saves_and_replays(tmp_path, monkeypatch, capsys):
    zoo(train, monkeypatch, "--algo", "ppo", "--env", "patchenv/Digits-v1", "--gym-packages", "patchenv",
        "-conf", "patchenv.integrations.zoo.ppo", "-n", "128", "-params", "n_steps:32", "batch_size:16",
        "--eval-freq", "64", "--eval-episodes", "1", "--seed", "0", "-f", str(tmp_path), *ENV_KWARGS)
    run = tmp_path / "ppo" / "patchenv-Digits-v1_1"
    model = PPO.load(run / "patchenv-Digits-v1.zip", device="cpu")
    # The file's settings, one overridden from the command line; 128 steps, not Zoo's 2048.
    assert (model.n_steps, model.batch_size, model.n_epochs, model.num_timesteps) == (32, 16, 4, 128)
    lengths = np.loadtxt(run / "0.monitor.csv", delimiter=",", skiprows=2, usecols=1, ndmin=1)
    assert lengths.tolist() == [16] * 8  # 128 steps of 16-step episodes
    evaluations = np.load(run / "evaluations.npz")
    assert evaluations["timesteps"].tolist() == [64, 128] and evaluations["ep_lengths"].tolist() == [[16], [16]]
    capsys.readouterr()
    zoo(enjoy, monkeypatch, "--algo", "ppo", "--env", "patchenv/Digits-v1", "--gym-packages", "patchenv",
        "-f", str(tmp_path), "--exp-id", "1", "-n", "40", "--no-render", "--deterministic")
    out = capsys.readouterr().out
    assert out.count("Episode Length 16") == 2  # 40 steps replay two whole 16-step episodes


@pytest.mark.parametrize("algo,cls", [("a2c", A2C), ("dqn", DQN)])
def test_a2c_and_dqn_train_with_their_modules(algo, cls, tmp_path, monkeypatch):
    zoo(train, monkeypatch, "--algo", algo, "--env", "patchenv/Digits-v1", "--gym-packages", "patchenv",
        "-conf", f"patchenv.integrations.zoo.{algo}", "-n", "96", "-params", "learning_starts:32" if algo == "dqn"
        else "n_steps:16", "--seed", "0", "-f", str(tmp_path), *ENV_KWARGS)
    model = cls.load(tmp_path / algo / "patchenv-Digits-v1_1" / "patchenv-Digits-v1.zip", device="cpu")
    assert model.num_timesteps == 96
    if algo == "dqn":
        assert (model.batch_size, model.target_update_interval, model.learning_starts) == (32, 256, 32)
    else:
        assert model.n_steps == 16

"""A keeprate policy reading some progress features only: the wrapper shows SB3 those
(terminal observations included), the recipe names them, and the selector that applies
the policy reads the same ones from the env's full observation."""
import json
import zipfile

import numpy as np
import pytest

from agents.keeprate import KeepRate, main, train_time_policy
from agents.keeprate_file import PolicyHeader, read_policy
from agents.keeprate_task import Greedy
from agents.progress_view import ObserveFeatures, feature_index, parse_features
from patchenv.env.progress import PROGRESS_FEATURES
from patchenv.selector import ZIP_HEADER

LEVELS, EVERY = 4, 5


def test_features_are_checked_and_put_in_the_observation_order():
    assert parse_features("last_kept, budget_done") == ("budget_done", "last_kept")
    assert parse_features(None) == PROGRESS_FEATURES
    assert list(feature_index(["last_kept", "loss"])) == [PROGRESS_FEATURES.index("loss"),
                                                          PROGRESS_FEATURES.index("last_kept")]
    for bad in ("budget", "", "loss,loss"):
        with pytest.raises(ValueError, match="observe must name distinct progress features"):
            parse_features(bad)


class FakeVec:
    """Two runs' progress observations, numbered 0..17; run 1 ends each step."""

    num_envs = 2
    observation_space = None
    action_space = None
    render_mode = None

    def __init__(self):
        self.obs = np.arange(18, dtype=np.float32).reshape(2, 9)

    def reset(self):
        return self.obs.copy()

    def step_async(self, actions):
        pass

    def step_wait(self):
        infos = [{}, {"terminal_observation": self.obs[1].copy() + 100}]
        return self.obs.copy(), np.zeros(2, np.float32), np.array([False, True]), infos


def test_the_wrapper_shows_the_named_features_terminal_observations_too():
    import gymnasium as gym

    fake = FakeVec()
    fake.observation_space = gym.spaces.Box(-np.inf, np.inf, (9,), np.float32)
    fake.action_space = gym.spaces.Discrete(LEVELS)
    venv = ObserveFeatures(fake, ["budget_done", "last_kept"])
    assert venv.observation_space.shape == (2,)
    np.testing.assert_array_equal(venv.reset(), fake.obs[:, [0, 8]])
    obs, _, _, infos = venv.step_wait()
    np.testing.assert_array_equal(obs, fake.obs[:, [0, 8]])
    np.testing.assert_array_equal(infos[1]["terminal_observation"], fake.obs[1, [0, 8]] + 100)


@pytest.fixture(scope="module")
def budget_policy(tmp_path_factory):
    out = tmp_path_factory.mktemp("observe") / "b.zip"
    result = train_time_policy(out, runs=2, epochs=1, train_images=400, eval_images=200, proxy_seeds=1,
                               levels=LEVELS, decide_every=EVERY, seed=0, algo="dqn", dataset="digits",
                               show_progress=False, observe=["budget_done"])
    return out, result


def test_a_policy_reading_budget_done_alone_records_it_and_reads_back(budget_policy):
    out, result = budget_policy
    assert result["recipe"]["observe"] == ["budget_done"]
    with zipfile.ZipFile(out) as archive:
        assert json.loads(archive.read(ZIP_HEADER))["recipe"]["observe"] == ["budget_done"]
    model, levels = read_policy(out)
    assert model.observation_space.shape == (1,) and levels == LEVELS
    assert PolicyHeader.read(out).features == ("budget_done",)


def test_the_selector_and_the_reaction_check_feed_it_budget_done(budget_policy):
    out, _ = budget_policy
    import gymnasium as gym
    from tiny_env import TINY

    model, levels = read_policy(out)
    agent = KeepRate(objective="time", policy=str(out), decide_every=EVERY)
    env = gym.make("patchenv/PatchSelection-v1", **{**TINY, "budget_epochs": 1}, **agent.env_kwargs())
    agent.setup(env)
    env.close()
    greedy = Greedy(model, levels, feature_index(PolicyHeader.read(out).features))
    rng = np.random.default_rng(0)
    for budget_done in (0.0, 0.3, 0.7, 1.2):
        obs = rng.normal(size=len(PROGRESS_FEATURES)).astype(np.float32)  # the other features: noise
        obs[0] = budget_done
        level, _ = model.predict(np.array([budget_done], dtype=np.float32), deterministic=True)
        expected = max(1, min(64, round((int(level) + 1) * 64 / levels)))
        assert agent.decide(obs) == expected == greedy.count(obs, 64)


def test_observe_is_refused_in_one_line_for_other_objectives_and_unknown_names(capsys):
    for argv, message in ((["--objective", "target", "--observe", "budget_done"], "--observe is for --objective time"),
                          (["--objective", "time", "--observe", "budget", "--runs", "1"], "observe must name")):
        with pytest.raises(SystemExit):
            main(argv + ["--out", "never.zip"])
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("python -m agents.keeprate: error:") and message in err

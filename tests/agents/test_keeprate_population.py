"""keeprate's proxy task on a population: PopulationRuns gives what SB3's DummyVecEnv of
WholeRuns over single envs gives (seeds s + i), decision by decision, across epoch ends,
run ends and fresh runs, for both objectives; and the policy trains on it."""
import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.keeprate import train_policy
from agents.keeprate_file import read_policy
from agents.keeprate_task import PopulationRuns, WholeRuns
from patchenv.data.generated import synthetic
from patchenv.population import PopulationEnv
from same_vec_step import assert_same_vec_step

DATA = synthetic(n_train=80, n_test=16, image_size=16, seed=4)
# 72 training images after the 10% validation split: 4 steps an epoch of 16, 2 epochs a
# run = 8 steps, decisions of 3 steps: 3 decisions a run, one crossing each epoch end.
KW = dict(dataset=DATA, batch_size=16, patch_size=4, dim=32, depth=2, heads=2, dim_head=16, mlp_dim=64,
          device="cpu", n_patch_desired=8, val_fraction=0.1, selection="count", reward="progress",
          budget_epochs=2, probe_every=3, probe_size=8)


@pytest.mark.parametrize("target", [None, 0.3])
def test_population_runs_match_whole_runs_of_single_envs(target):
    pop = PopulationRuns(PopulationEnv(2, **KW), levels=4, decide_every=3, target=target)
    dummy = DummyVecEnv([lambda: WholeRuns(gym.make("patchenv/PatchSelection-v1", **KW), 4, 3, target)] * 2)
    pop.seed(5)
    dummy.seed(5)
    np.testing.assert_allclose(pop.reset(), dummy.reset(), rtol=1e-4, atol=1e-5)
    rng = np.random.default_rng(1)
    dones = 0
    for _ in range(8):
        levels = rng.integers(0, 4, size=2)
        dones += assert_same_vec_step(pop.step(levels), dummy.step(levels))
    assert dones >= 2  # whole runs ended and fresh ones started


def test_train_policy_on_a_population(tmp_path):
    path = tmp_path / "policy.zip"
    result = train_policy(path, runs=4, epochs=1, levels=4, decide_every=5, seed=0, dataset="synthetic",
                          show_progress=False, population=2)
    model, levels = read_policy(path)
    assert levels == 4 and result["decisions"] == 4 * int(np.ceil(57 / 5)) and len(result["counts"]) > 0


def test_proxy_runs_are_seeded_from_1000_up(tmp_path, monkeypatch):
    """Training never uses the seeds the benchmarks evaluate on (0-999)."""
    from patchenv.env.patch_selection import PatchSelectionEnv

    seeds = []
    reset = PatchSelectionEnv.reset

    def recording_reset(self, *, seed=None, options=None):
        if seed is not None:
            seeds.append(seed)
        return reset(self, seed=seed, options=options)

    monkeypatch.setattr(PatchSelectionEnv, "reset", recording_reset)
    result = train_policy(tmp_path / "p.zip", runs=2, epochs=1, levels=4, decide_every=20, seed=3,
                          dataset="synthetic", show_progress=False, population=2)
    # runs 1003 and 1004 (the population's two), then the rollout of the trained policy (10003)
    assert seeds == [1003, 1004, 10003]
    assert read_policy(tmp_path / "p.zip")[1] == 4 and result["counts"]

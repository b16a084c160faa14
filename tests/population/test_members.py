"""Members: the unchanged runner trains E agents on one population, each run's numbers
those of the same run alone (computed here by running it alone)."""
import gymnasium as gym
import numpy as np
import pytest
import torch

from patchenv import registry
from patchenv.data.generated import synthetic
from patchenv.population import PopulationEnv
from patchenv.population.members import Members
from patchenv.run import Budget, run_training

DATA = synthetic(n_train=96, n_test=32, image_size=16, seed=5)
KW = dict(dataset=DATA, batch_size=16, patch_size=4, dim=32, depth=2, heads=2, dim_head=16, mlp_dim=64,
          device="cpu", n_patch_desired=8)
SEEDS = [0, 1, 2]


def _alone(spec, seed, out):
    agent = registry.make_from_spec(spec, seed=seed)
    env = gym.make("patchenv/PatchSelection-v1", **{**KW, **agent.env_kwargs()})
    return run_training(env, agent, out, budget=Budget(epochs=2), seed=seed, show_progress=False, masked_eval=True)


@pytest.mark.parametrize("spec", ["random", "agentvit:frequency=2:buffer_batch_size=4:learning_starts=4"])
def test_runs_of_a_population_train_as_they_would_alone(spec, tmp_path):
    agents = [registry.make_from_spec(spec, seed=s) for s in SEEDS]
    population = PopulationEnv(len(SEEDS), **{**KW, **agents[0].env_kwargs()})
    members = Members(population, SEEDS)
    together = members.run([
        lambda env, a=a, s=s: run_training(env, a, tmp_path / f"pop{s}", budget=Budget(epochs=2), seed=s,
                                           show_progress=False, masked_eval=True)
        for a, s in zip(agents, SEEDS)])
    for seed, metrics in zip(SEEDS, together):
        alone = _alone(spec, seed, tmp_path / f"alone{seed}")
        assert metrics["meta"]["status"] == "complete"
        for got, want in zip(metrics["epochs"], alone["epochs"]):
            assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-4)
            assert got["mean_patches_kept"] == pytest.approx(want["mean_patches_kept"], rel=1e-6)
        for key in ("test_accuracy", "test_accuracy_masked", "test_accuracy_random_masks", "train_flops"):
            assert metrics["summary"][key] == pytest.approx(alone["summary"][key], abs=1 / 32), key
    # the runner saved each run's checkpoint in the single env's format
    assert (tmp_path / "pop1" / "progress.json").exists()


def test_a_failing_run_leaves_and_the_others_finish():
    population = PopulationEnv(3, **KW)
    members = Members(population, SEEDS)
    mask = np.ones(16, dtype=np.int8)

    def good(env):
        for _ in range(4):
            env.step(mask)
        return env.unwrapped.global_step

    def bad(env):
        env.step(mask)
        with pytest.raises(ValueError, match="action must be a 0/1 mask"):
            env.step(np.full(16, 2))  # a bad action is this run's error alone
        raise RuntimeError("run 1 gives up")

    with pytest.raises(RuntimeError, match="run 1 gives up"):
        members.run([good, bad, good])
    assert [run.global_step for run in population.runs] == [4, 1, 4]
    torch.testing.assert_close(population.runs[0].model.linear_head[1].weight,
                               population.stacked.weights()["linear_head.1.weight"][0])

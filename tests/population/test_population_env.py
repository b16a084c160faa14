"""PopulationEnv: E runs as one batched model are E single envs. Each test steps a
population and E single envs (seeds s + i, the same actions) side by side and compares
what each run returns, computed the other way (one ViT at a time)."""
import gymnasium as gym
import numpy as np
import pytest
import torch

from patchenv import PatchSelectionEnv
from patchenv.data.generated import synthetic
from patchenv.population import PopulationEnv

# 64 training images in batches of 16: an epoch is 4 steps, so 10 steps cross two epoch
# ends and their autoresets. 16x16 images, 4x4 patches: N = 16.
DATA = synthetic(n_train=64, n_test=32, image_size=16, seed=3)
KW = dict(dataset=DATA, batch_size=16, patch_size=4, dim=32, depth=2, heads=2, dim_head=16, mlp_dim=64,
          device="cpu", eval_batch_size=32, n_patch_desired=8)
E, N, B = 3, 16, 16
TOL = dict(rtol=1e-4, atol=1e-5)
COMPARED = ("loss", "accuracy", "kept", "tokens", "padding_tokens", "epoch", "global_step", "flops", "diverged")


def actions_for(selection: str, t: int, rng: np.random.Generator) -> np.ndarray:
    """Unlike actions for each run: different counts across runs and, per image, uneven rows."""
    if selection == "count":
        return rng.integers(0, N, size=E)
    shape = (E, N) if selection == "batch" else (E, B, N)
    a = (rng.random(shape) < rng.uniform(0.2, 0.9, size=(E,) + (1,) * (len(shape) - 1))).astype(np.int8)
    a[..., 0] = 1  # at least one patch each
    if t % 3 == 0:
        a[1] = 1  # one run keeps everything while the others drop
    return a


def step_singles(singles, ended, actions):
    """The E single envs as a NEXT_STEP vector env would step them."""
    out = []
    for i, env in enumerate(singles):
        if ended[i]:
            obs, info = env.reset()
            out.append((obs, 0.0, False, False, None))
        else:
            out.append(env.step(actions[i]))
        ended[i] = out[-1][2] or out[-1][3]
    return out


@pytest.mark.parametrize("selection,extra", [
    ("batch", {}),
    ("image", {"obs_type": "attention"}),
    ("count", {"val_fraction": 0.25, "reward": "progress", "probe_every": 2, "probe_size": 8}),
])
def test_a_population_steps_as_its_runs_alone_across_epoch_ends(selection, extra):
    kw = dict(KW, selection=selection, **extra)
    pop = gym.make_vec("patchenv/Digits-v1", num_envs=E, vectorization_mode="vector_entry_point", **kw)
    assert isinstance(pop, PopulationEnv)
    singles = [PatchSelectionEnv(**kw) for _ in range(E)]
    obs, _ = pop.reset(seed=7)
    for i, env in enumerate(singles):
        np.testing.assert_allclose(obs[i], env.reset(seed=7 + i)[0], **TOL)
    rng = np.random.default_rng(0)
    ended = [False] * E
    seen_end = seen_reset = 0
    for t in range(10):
        a = actions_for(selection, t, rng)
        was_ended = list(ended)
        obs, rewards, terminated, truncated, info = pop.step(a)
        ref = step_singles(singles, ended, a)
        for i in range(E):
            r_obs, r_reward, r_term, r_trunc, r_info = ref[i]
            np.testing.assert_allclose(obs[i], r_obs, **TOL)
            assert rewards[i] == pytest.approx(r_reward, rel=1e-4, abs=1e-5)
            assert (terminated[i], truncated[i]) == (r_term, r_trunc)
            if was_ended[i]:
                seen_reset += 1
                assert not info.get("_loss", np.zeros(E, bool))[i] and info["global_step"][i] == singles[i].global_step
                continue
            for key in COMPARED:
                assert info[key][i] == pytest.approx(r_info[key], rel=1e-4, abs=1e-5), (t, i, key)
        seen_end += int(truncated.sum())
    assert seen_end >= E and seen_reset >= E  # the comparison crossed epoch ends and autoresets
    for i, env in enumerate(singles):  # the runs' ViTs really are the single envs' ViTs
        assert pop.runs[i].global_step == env.global_step
        for (name, p), q in zip(pop.runs[i].model.named_parameters(), env.model.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-4, msg=name)
    assert pop.evaluate("test")[1]["accuracy"] == pytest.approx(singles[1].evaluate("test")["accuracy"], abs=1 / 32)


def test_a_diverging_run_leaves_the_others_unchanged():
    clean, broken = PopulationEnv(E, **KW), PopulationEnv(E, **KW)
    clean.reset(seed=1)
    broken.reset(seed=1)
    with torch.no_grad():
        broken.stacked.flat[1, :50] = float("inf")  # run 1's patch embedding overflows
    broken._observe()  # the pending observations, from the changed weights
    a = np.ones((E, N), dtype=np.int8)
    _, r_clean, _, _, i_clean = clean.step(a)
    _, r_broken, terminated, _, i_broken = broken.step(a)
    assert terminated.tolist() == [False, True, False] and i_broken["diverged"].tolist() == [False, True, False]
    for i in (0, 2):  # bit for bit: the same batched arithmetic, run 1 masked out
        assert r_broken[i] == r_clean[i] and i_broken["loss"][i] == i_clean["loss"][i]
    assert torch.equal(broken.stacked.flat[[0, 2]], clean.stacked.flat[[0, 2]])
    assert broken.adam.steps.tolist() == [1, 0, 1]  # run 1's update was not applied
    obs, *_ , info = broken.step(a)  # the next step autoresets run 1 and trains the others
    assert not info["_loss"][1] and info["_loss"][0] and info["_loss"][2]


K = 1  # the run made to diverge in the isolation tests
OTHERS = [i for i in range(E) if i != K]


def overflow(pop, k):
    """Make run k's patch embedding infinite through its ViT (a view of its row of the
    stacked weights): every step it trains from now on diverges."""
    with torch.no_grad():
        pop.runs[k].model.to_patch_embedding[1].weight.fill_(float("inf"))


def uneven_actions(selection: str, t: int) -> np.ndarray:
    """Runs at different counts, run K keeping the most: its count is the padded length
    whenever it trains (image mode: uneven rows too)."""
    if selection == "count":
        return np.array([4 + t % 3, 12, 2 + t % 4])
    rng = np.random.default_rng(t)
    shape = (E, N) if selection == "batch" else (E, B, N)
    a = (rng.random(shape) < np.array([0.4, 0.9, 0.3]).reshape((E,) + (1,) * (len(shape) - 1))).astype(np.int8)
    a[..., 0] = 1
    return a


def others(pop, out) -> list:
    """Everything of the runs other than K after a step: what step returned and the state."""
    obs, rewards, terminated, truncated, info = out
    return [np.asarray(obs)[OTHERS], rewards[OTHERS], terminated[OTHERS], truncated[OTHERS],
            *(info[key][OTHERS] for key in ("loss", "accuracy", "kept", "padding_tokens", "flops", "epoch")),
            pop.stacked.flat.detach()[OTHERS], pop.adam.exp_avg[OTHERS], pop.adam.exp_avg_sq[OTHERS],
            pop.adam.steps[OTHERS], pop.counters.global_step[OTHERS]]


@pytest.mark.parametrize("selection", ["batch", "image", "count"])
def test_a_run_diverging_mid_episode_leaves_the_others_bit_identical(selection):
    # Population `broken`: run K's weights overflow after 3 steps, 3 steps into a 12-step
    # episode; it diverges, restarts, diverges again at each step it trains. `clean`: the
    # same seeds and actions, nothing diverges. The other runs must not tell them apart.
    kw = dict(KW, selection=selection, episode_steps=12)
    broken, clean = PopulationEnv(E, **kw), PopulationEnv(E, **kw)
    broken.reset(seed=1)
    clean.reset(seed=1)
    diverged = []
    for t in range(10):
        if t == 3:
            overflow(broken, K)
        a = uneven_actions(selection, t)
        out_broken, out_clean = broken.step(a), clean.step(a)
        diverged.append(bool(out_broken[4]["diverged"][K]) if out_broken[4]["_diverged"][K] else None)
        # On a restart step the padded length is run K's action's, as when it trains.
        assert broken.last_step_tokens == clean.last_step_tokens, t
        for x, y in zip(others(broken, out_broken), others(clean, out_clean)):
            assert (torch.equal(x, y) if isinstance(x, torch.Tensor) else np.array_equal(x, y)), t
        assert not out_clean[4]["diverged"].any()
    # Run K diverged at every step it trained after the overflow and restarted in between
    # (its slot computed, its update discarded): the steps the old shapes got wrong.
    assert diverged == [False] * 3 + [True, None] * 3 + [True]
    assert not torch.isfinite(broken.stacked.flat[K]).all() and torch.isfinite(broken.stacked.flat[OTHERS]).all()


def test_a_run_restarting_after_a_full_episode_pads_as_before():
    # Nothing diverges: a run on its autoreset step after its episode's last step computes
    # on the others' longest count (the shapes, and so the numbers, of before), whatever
    # its ignored action asks for.
    kw = dict(KW, selection="count", episode_steps=2)
    pop = PopulationEnv(E, **kw)
    pop.reset(seed=2)
    pop.step(np.array([3, 3, 3]))
    pop.reset(options={"reset_mask": np.arange(E) == 0})  # run 0's episode now ends a step later
    _, _, _, truncated, _ = pop.step(np.array([3, 3, 3]))
    assert truncated.tolist() == [False, True, True]
    pop.step(np.array([5, 15, 15]))  # runs 1 and 2 autoreset: run 0's 6 patches set the length
    assert pop.last_step_tokens == E * B * 6


def test_a_population_saved_between_a_divergence_and_its_restart_resumes_exactly(tmp_path):
    kw = dict(KW, selection="batch", episode_steps=12)
    a, b = PopulationEnv(E, **kw), PopulationEnv(E, **kw)
    a.reset(seed=3)
    a.step(uneven_actions("batch", 0))
    overflow(a, K)
    assert a.step(uneven_actions("batch", 1))[4]["diverged"].tolist() == [False, True, False]
    a.save_checkpoint(tmp_path / "pop.pt")
    b.load_checkpoint(tmp_path / "pop.pt")
    for t in range(2, 6):  # the restart (shaped by run K's action) is the first step resumed
        out_a, out_b = a.step(uneven_actions("batch", t)), b.step(uneven_actions("batch", t))
        assert a.last_step_tokens == b.last_step_tokens
        for x, y in zip(others(a, out_a), others(b, out_b)):
            assert (torch.equal(x, y) if isinstance(x, torch.Tensor) else np.array_equal(x, y)), t


def test_a_population_resumed_from_its_checkpoint_continues_exactly(tmp_path):
    kw = dict(KW, selection="count", obs_type="progress")
    rng = np.random.default_rng(5)
    actions = [rng.integers(0, N, size=E) for _ in range(9)]
    a, b = PopulationEnv(E, **kw), PopulationEnv(E, **kw)
    a.reset(seed=11)
    for t in range(3):
        a.step(actions[t])
    a.save_checkpoint(tmp_path / "pop.pt")
    first = [a.step(actions[t]) for t in range(3, 9)]
    b.load_checkpoint(tmp_path / "pop.pt")
    second = [b.step(actions[t]) for t in range(3, 9)]
    for x, y in zip(first, second):
        np.testing.assert_array_equal(x[0], y[0])
        np.testing.assert_array_equal(x[1], y[1])
        np.testing.assert_array_equal(x[4].get("loss"), y[4].get("loss"))
    assert torch.equal(a.stacked.flat, b.stacked.flat)


def test_one_run_moves_between_a_population_and_a_single_env(tmp_path):
    pop = PopulationEnv(2, **KW)
    pop.reset(seed=4)
    mask = np.ones((2, N), dtype=np.int8)
    mask[:, 8:] = 0
    pop.step(mask)
    pop.save_run_checkpoint(1, tmp_path / "run1.pt")
    single = PatchSelectionEnv(**KW)
    single.load_checkpoint(tmp_path / "run1.pt")
    single.reset()
    _, _, _, _, info = pop.step(mask)
    _, _, _, _, s_info = single.step(mask[1])
    assert info["loss"][1] == pytest.approx(s_info["loss"], rel=1e-5)
    # and back: run 0 becomes the saved run, weights, moments and step count
    pop.load_run_checkpoint(0, tmp_path / "run1.pt")
    saved = PatchSelectionEnv(**KW)
    saved.load_checkpoint(tmp_path / "run1.pt")
    for p, q in zip(pop.runs[0].model.parameters(), saved.model.parameters()):
        assert torch.equal(p, q)
    assert pop.adam.steps[0] == 1 and pop.runs[0].global_step == 1


def test_bad_actions_are_refused_in_one_line_and_change_nothing():
    pop = PopulationEnv(E, **dict(KW, selection="count"))
    pop.reset(seed=0)
    states = [run.np_random.bit_generator.state for run in pop.runs]
    weights = pop.stacked.flat.detach().clone()
    with pytest.raises(ValueError, match=r"one action per run, \(E,\) integers with E = 3; got 2"):
        pop.step(np.array([1, 2]))
    with pytest.raises(ValueError, match=r"^run 2: action must be an integer in \[0, 15\]"):
        pop.step(np.array([1, 2, 99]))
    assert [run.np_random.bit_generator.state for run in pop.runs] == states  # runs 0 and 1 drew, then undid
    assert torch.equal(pop.stacked.flat, weights) and all(run.global_step == 0 for run in pop.runs)
    with pytest.raises(ValueError, match=r"^seed of run 1 must be a non-negative integer or None, got -1$"):
        pop.reset(seed=[5, -1, 6])
    assert [run.np_random.bit_generator.state for run in pop.runs] == states  # run 0 was not reset either
    with pytest.raises(ValueError, match="does not support cuda_graph=True"):
        PopulationEnv(2, **dict(KW, cuda_graph=True))
    with pytest.raises(ValueError, match="num_envs must be an integer >= 1"):
        PopulationEnv(0, **KW)


def test_tensor_observations_reset_masks_and_frames():
    pop = PopulationEnv(2, **dict(KW, tensor_obs=True, obs_type="pooled", render_mode="rgb_array"))
    obs, info = pop.reset(seed=2)
    assert isinstance(obs, torch.Tensor) and obs.shape == (2, N, 32)
    obs, rewards, terminated, truncated, info = pop.step(torch.ones(2, N))
    assert all(isinstance(x, torch.Tensor) for x in (rewards, terminated, truncated))
    frames = pop.render()
    assert len(frames) == 2 and frames[0].dtype == np.uint8 and frames[0].ndim == 3
    before = pop.runs[1].global_step
    pop.reset(seed=[None, 9], options={"reset_mask": np.array([False, True])})
    assert pop.runs[0].global_step == 1 and before == 1 and pop.runs[1].global_step == 0
    single = PatchSelectionEnv(**dict(KW, tensor_obs=True, obs_type="pooled"))
    torch.testing.assert_close(pop.runs[1].run.obs, single.reset(seed=9)[0], rtol=1e-5, atol=1e-6)

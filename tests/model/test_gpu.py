"""The CUDA path: a training step, per-image masks, checkpoints across devices, bf16,
torch.compile and AgentViT, all on the GPU. Marked ``gpu`` and skipped without CUDA, so a
plain ``pytest`` on a CPU machine runs none of them; on a GPU machine
``pytest -m gpu tests/model/test_gpu.py`` (or ``python -m benchmarks.device_report``) runs them.

Tolerances: CPU and GPU kernels sum in different orders, so fp32 results agree to about
1e-6 relative on this tiny ViT; the bounds below leave two orders of magnitude of room
and would still catch a wrong mask, a dropped token or a missed optimiser step.
"""
import gymnasium as gym
import numpy as np
import pytest
import torch

import agents
from tiny_env import TINY
from patchenv.model.vit import SimpleViT, init_weights

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CUDA = "cuda"  # the device under test (module level so a CPU dry run can swap it)
INFO_KEYS = {"loss", "accuracy", "kept", "tokens", "padding_tokens", "epoch", "global_step", "loss_term",
             "patch_term", "diverged"}
N = 64  # 32x32 images in 4x4 patches


def make_env(device=None, **overrides):
    # eager unless a test asks for graphs: these tests were written for the eager step,
    # and test_cuda_graph_is_the_default_on_cuda checks the default.
    kwargs = {**TINY, "device": device or CUDA, "cuda_graph": False, **overrides}
    env = gym.make("patchenv/PatchSelection-v1", **kwargs)
    env.reset(seed=0)
    return env


def batch_mask(k: int, seed: int = 0) -> np.ndarray:
    mask = np.zeros(N, dtype=np.int8)
    mask[np.random.default_rng(seed).choice(N, size=k, replace=False)] = 1
    return mask


def image_masks(counts, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros((len(counts), N), dtype=bool)
    for i, c in enumerate(counts):
        mask[i, rng.choice(N, size=int(c), replace=False)] = True
    return mask


def params(env) -> list[torch.Tensor]:
    return [p.detach().float().cpu().clone() for p in env.unwrapped.model.parameters()]


def assert_same_update(before, a, b, rel=0.02):
    """Two runs that started from the weights `before` made the same update, up to `rel`
    of its size. Element-wise bounds would be flaky: Adam turns a gradient near zero into
    a full +-lr step, so a rounding-level sign flip moves a weight by 2 lr."""
    diff = torch.sqrt(sum(((x - y) ** 2).sum() for x, y in zip(a, b)))
    update = torch.sqrt(sum(((x - w) ** 2).sum() for x, w in zip(a, before)))
    assert update > 0, "no weight changed"
    assert diff <= rel * update, f"the runs' weights differ by {diff:.3g}, {diff / update:.2%} of the update"


def test_training_step_on_cuda():
    env = make_env(tensor_obs=True)
    u = env.unwrapped
    assert u.device.type == "cuda"
    assert all(p.is_cuda for p in u.model.parameters())
    before = params(env)
    obs, reward, terminated, truncated, info = env.step(batch_mask(32))
    assert INFO_KEYS <= set(info)
    assert np.isfinite(info["loss"]) and np.isfinite(reward)
    assert not terminated and not truncated and not info["diverged"]
    assert info["kept"] == 32 and info["tokens"] == TINY["batch_size"] * 32 and info["padding_tokens"] == 0
    assert isinstance(obs, torch.Tensor) and obs.is_cuda and bool(torch.isfinite(obs).all())
    after = params(env)
    assert any(not torch.equal(a, b) for a, b in zip(before, after)), "the optimiser step changed no weight"
    assert u.last_step_time_s > 0 and u.train_time_s >= u.last_step_time_s


@pytest.mark.parametrize("uneven", [False, True], ids=["equal-counts", "uneven-counts"])
def test_per_image_masks_on_cuda_match_cpu(uneven):
    b = 8
    g = torch.Generator().manual_seed(0)
    vit = dict(image_size=32, patch_size=4, num_classes=10, dim=32, depth=2, heads=2, mlp_dim=64, dim_head=16)
    with torch.random.fork_rng(devices=[]):
        cpu = SimpleViT(**vit)
        gpu = SimpleViT(**vit).to(CUDA)
    init_weights(cpu, g)
    gpu.load_state_dict(cpu.state_dict())
    cpu.eval()
    gpu.eval()
    img = torch.randn(b, 3, 32, 32, generator=g)
    counts = [5, 17, 32, 64, 1, 40, 23, 9] if uneven else [24] * b
    keep = torch.from_numpy(image_masks(counts))
    with torch.no_grad():
        want = cpu(img, keep)
        got = gpu(img.to(CUDA), keep.to(CUDA)).cpu()
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    seen = []
    hook = gpu.transformer.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[:2])))
    with torch.no_grad():
        gpu(img.to(CUDA), keep.to(CUDA))
    hook.remove()
    assert seen == [(b, max(counts))]  # dropped tokens really removed (padded to the max)
    if uneven:  # the padding path: each image's logits are those of the image run alone
        with torch.no_grad():
            alone = torch.cat([gpu(img[i:i + 1].to(CUDA), keep[i:i + 1].to(CUDA)) for i in range(b)]).cpu()
        torch.testing.assert_close(got, alone, atol=1e-4, rtol=1e-4)


def test_per_image_env_step_on_cuda_counts_padding():
    env = make_env(selection="image")
    counts = [8 + (i % 5) * 6 for i in range(TINY["batch_size"])]
    _, _, _, _, info = env.step(image_masks(counts).astype(np.int8))
    assert np.isfinite(info["loss"])
    assert info["tokens"] == sum(counts)
    assert info["padding_tokens"] == TINY["batch_size"] * max(counts) - sum(counts)


@pytest.mark.parametrize("save_on,load_on", [("cuda", "cpu"), ("cpu", "cuda")], ids=["cuda-to-cpu", "cpu-to-cuda"])
def test_checkpoint_moves_between_cuda_and_cpu(tmp_path, save_on, load_on):
    devices = {"cuda": CUDA, "cpu": "cpu"}
    src = make_env(devices[save_on])
    for seed in range(2):
        src.step(batch_mask(32, seed))
    path = tmp_path / "run.pt"
    src.unwrapped.save_checkpoint(path)
    dst = make_env(devices[load_on])
    dst.unwrapped.load_checkpoint(path)
    loaded = params(dst)
    assert all(torch.equal(x, y) for x, y in zip(loaded, params(src)))  # the weights travel exactly
    assert dst.unwrapped.global_step == src.unwrapped.global_step
    # The next step trains on the saved pending batch with the saved weights and Adam
    # moments: the same step on either device, up to kernel rounding.
    mask = batch_mask(24, seed=7)
    _, _, _, _, want = src.step(mask)
    _, _, _, _, got = dst.step(mask)
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-4)
    assert got["accuracy"] == pytest.approx(want["accuracy"], abs=1e-6)
    assert_same_update(loaded, params(dst), params(src))


def test_bf16_autocast_step_on_cuda():
    fp32 = make_env()
    bf16 = make_env(amp="bf16")
    before = params(bf16)
    mask = batch_mask(32)
    _, _, _, _, want = fp32.step(mask)
    _, _, _, _, got = bf16.step(mask)
    assert np.isfinite(got["loss"]) and not got["diverged"]
    # Same seed: same weights and batch; bf16 matmuls round to ~3 significant digits.
    assert got["loss"] == pytest.approx(want["loss"], rel=3e-2)
    assert all(p.dtype == torch.float32 for p in bf16.unwrapped.model.parameters())  # autocast, fp32 master weights
    assert any(not torch.equal(a, b) for a, b in zip(before, params(bf16)))


def test_compiled_env_step_equals_eager_on_cuda():
    eager = make_env()
    compiled = make_env(compile=True)
    before = params(eager)
    assert all(torch.equal(x, y) for x, y in zip(before, params(compiled)))  # same seed, same weights
    # Several patch counts: the compiled forward has dynamic shapes and must give the same
    # numbers at each sequence length, and for the all-patch (no gather) path too.
    for k in (32, 16, N, 32):
        mask = batch_mask(k, seed=k)
        _, _, _, _, want = eager.step(mask)
        _, _, _, _, got = compiled.step(mask)
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-3), k
        assert got["tokens"] == want["tokens"]
    assert_same_update(before, params(compiled), params(eager))


def test_agentvit_trains_on_the_cuda_env():
    agent = agents.make("agentvit", frequency=2, learning_starts=0)
    env = make_env(**agent.env_kwargs())
    q0 = [p.detach().clone() for p in agent.q_network.parameters()]
    stats = agent.train(env, steps=40)
    assert stats["steps"] == 40 and np.isfinite(stats["reward"])
    assert agent.device.type == "cuda"
    assert all(p.is_cuda for p in agent.q_network.parameters())
    assert all(p.is_cuda for p in agent.target_network.parameters())
    assert agent._states.is_cuda and agent._rewards.is_cuda  # the replay stays on the GPU
    assert agent.replay_size == 20 and agent.updates > 0
    assert any(not torch.equal(a, b.to(a.device)) for a, b in zip(q0, agent.q_network.parameters()))
    assert agent.overhead_time_s > 0
    obs = env.reset()[0]
    assert isinstance(obs, torch.Tensor) and obs.is_cuda
    assert env.action_space.contains(agent.act(obs))


# -- CUDA graphs (cuda_graph=True) -------------------------------------------------------------
def test_cuda_graph_is_the_default_on_cuda():
    env = make_env(cuda_graph=None)
    assert env.unwrapped.cuda_graph and env.unwrapped.run.graphed is not None
    with pytest.warns(UserWarning, match="compile=True"):
        compiled = make_env(cuda_graph=None, compile=True)
    assert not compiled.unwrapped.cuda_graph and compiled.unwrapped.run.graphed is None


def test_cuda_graph_steps_equal_eager_steps():
    eager = make_env()
    graphed = make_env(cuda_graph=True)
    before = params(eager)
    # A shape's first step runs eagerly, its second captures and replays; all-patch and
    # gathered graphs; the counts come back after others (replay of a cached graph).
    for i, k in enumerate((32, 32, 16, 16, N, N, 32, 16, N)):
        mask = batch_mask(k, seed=i)
        _, r_want, _, _, want = eager.step(mask)
        _, r_got, _, _, got = graphed.step(mask)
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-4), (i, k)
        assert got["accuracy"] == pytest.approx(want["accuracy"], abs=1e-6)
        assert r_got == pytest.approx(r_want, rel=1e-4) and got["tokens"] == want["tokens"]
    assert set(graphed.unwrapped.run.graphed.shapes) == {("index", 32), ("index", 16), ("all",)}
    assert_same_update(before, params(graphed), params(eager))
    assert graphed.unwrapped.evaluate()["accuracy"] == pytest.approx(eager.unwrapped.evaluate()["accuracy"], abs=0.02)


def test_cuda_graph_per_image_rows_and_bf16():
    for amp in (None, "bf16"):
        eager = make_env(selection="image", amp=amp)
        graphed = make_env(selection="image", amp=amp, cuda_graph=True)
        for i in range(4):
            masks = image_masks([24] * TINY["batch_size"], seed=i).astype(np.int8)  # equal counts: index rows
            _, _, _, _, want = eager.step(masks)
            _, _, _, _, got = graphed.step(masks)
            assert got["loss"] == pytest.approx(want["loss"], rel=1e-4 if amp is None else 3e-2), (amp, i)
        assert ("index", TINY["batch_size"], 24) in graphed.unwrapped.run.graphed.shapes
        uneven = image_masks([8 + (j % 5) * 6 for j in range(TINY["batch_size"])]).astype(np.int8)
        assert np.isfinite(graphed.step(uneven)[4]["loss"])  # uneven counts: the eager path


def test_cuda_graph_skips_a_non_finite_update_and_resumes_from_a_checkpoint(tmp_path):
    env = make_env(cuda_graph=True)
    for i in range(2):
        env.step(batch_mask(32, seed=i))  # the second step replays the captured graph
    env.unwrapped.save_checkpoint(tmp_path / "run.pt")
    model = env.unwrapped.model
    steps_before = [s["step"].clone() for s in env.unwrapped.optimizer.state.values()]
    with torch.no_grad():
        model.linear_head[-1].bias.fill_(float("nan"))  # in place: the graph reads it
    before = params(env)
    _, _, terminated, _, info = env.step(batch_mask(32, seed=5))
    assert info["diverged"] and terminated
    after = params(env)
    assert all(torch.equal(a, b) or torch.isnan(a).any() for a, b in zip(after, before))  # no update applied
    assert all(torch.equal(s["step"], b) for s, b in zip(env.unwrapped.optimizer.state.values(), steps_before))
    # A checkpoint loads into a cuda_graph env and trains on (new graphs, restored state).
    other = make_env(cuda_graph=True)
    other.unwrapped.load_checkpoint(tmp_path / "run.pt")
    eager = make_env()
    eager.unwrapped.load_checkpoint(tmp_path / "run.pt")
    for i in range(3):
        mask = batch_mask(32, seed=10 + i)
        assert other.step(mask)[4]["loss"] == pytest.approx(eager.step(mask)[4]["loss"], rel=1e-4), i


def test_count_selection_progress_reward_and_patch_credit_on_cuda():
    """Keep-rate control on the GPU: a + 1 patches per image (the per-image credit has
    exactly that many non-zero entries, on the device), the FLOPs of that sequence length
    plus the probe's, a probe loss equal to the ViT's on the probe images, finite rewards."""
    import torch.nn.functional as F

    from patchenv import data as data_mod
    from patchenv.model.flops import step_flops
    from patchenv.env.progress import PROGRESS_FEATURES

    kw = dict(selection="count", reward="progress", val_fraction=0.2, probe_every=2, probe_size=40, budget_epochs=1)
    env = make_env(**kw)
    u = env.unwrapped
    for t, a in enumerate((3, 63, 20, 9), start=1):
        obs, reward, _, _, info = env.step(a)
        assert info["kept"] == a + 1 and np.isfinite(reward)
        assert info["flops"] - info["probe_flops"] == step_flops(u.vit_config, TINY["batch_size"], a + 1)["total"]
        credit = u.patch_credit()
        assert credit.device.type == "cuda" and ((credit > 0).sum(dim=1) == a + 1).all()
    x, y = u.setup.val[0][:40], u.setup.val[1][:40]
    with torch.no_grad():
        u.model.eval()
        logits = u.model(data_mod.normalize(data_mod.to_unit(x), u.setup.mean, u.setup.std))
        u.model.train()
    probe_loss = dict(zip(PROGRESS_FEATURES, obs))["probe_loss"]
    assert probe_loss == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-4)


def test_a_population_replays_cuda_graphs_with_the_eager_populations_numbers():
    """PopulationEnv(cuda_graph=True): a shape's first step runs eagerly, its second
    captures, later ones replay; equal counts (no key mask), unequal ones (a key mask),
    every patch; then a run with a NaN weight in its head (read by the step, not by the
    observation's embedding, which the eager step reuses) skips its update in the graph."""
    from patchenv.population import PopulationEnv

    kw = {**TINY, "device": CUDA, "selection": "batch", "obs_type": "pooled", "episode_steps": 20}
    eager, graphed = PopulationEnv(3, **kw, cuda_graph=False), PopulationEnv(3, **kw, cuda_graph=True)
    assert eager.graphs is None and graphed.graphs is not None
    for pop in (eager, graphed):
        pop.reset(seed=0)
    plan = [(32, 32, 32), (32, 32, 32), (16, 32, 8), (16, 32, 8), (N, N, N), (N, N, N), (16, 32, 8), (32, 32, 32)]
    for t, counts in enumerate(plan + plan[-2:]):
        if t == len(plan):
            for pop in (eager, graphed):
                with torch.no_grad():
                    pop.runs[1].model.linear_head[-1].weight[0, 0] = float("nan")
        actions = np.stack([batch_mask(k, seed=3 * t + i) for i, k in enumerate(counts)])
        want, got = eager.step(actions), graphed.step(actions)
        for x, y in zip(got[:4], want[:4]):
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5, err_msg=str(t))
        for key in ("loss", "accuracy", "diverged", "tokens"):
            np.testing.assert_allclose(got[4][key], want[4][key], rtol=1e-4, atol=1e-6, err_msg=f"{t} {key}")
    assert graphed.graphs.shapes == {("index", 3, TINY["batch_size"], 32, False),
                                     ("index", 3, TINY["batch_size"], 32, True), ("all",)}
    assert graphed.adam.steps.tolist() == eager.adam.steps.tolist() == [10, 8, 10]  # run 1: one update skipped, one autoreset step
    torch.testing.assert_close(graphed.stacked.flat.detach(), eager.stacked.flat.detach(), rtol=1e-4, atol=1e-5,
                               equal_nan=True)

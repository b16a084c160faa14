"""Bad input, lifecycle errors, divergence and checkpoints never lose work or corrupt a run."""
import hashlib
import io
import math
import os
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from tiny_env import TINY
from patchenv import data
from patchenv.env import PatchSelectionEnv

N, B = 64, 16
_SYNTHETIC = data.synthetic()  # the data set TINY names, built once for this file


def make(**kwargs) -> PatchSelectionEnv:
    return PatchSelectionEnv(**{**TINY, "dataset": _SYNTHETIC, **kwargs})


def valid(selection, seed):
    rng = np.random.default_rng(seed)
    a = (rng.random((N,) if selection == "batch" else (B, N)) < 0.5).astype(np.int8)
    a[..., 0] = 1
    return a


def assert_same_step(s1, s2):
    np.testing.assert_array_equal(s1[0], s2[0])
    assert s1[1:4] == s2[1:4]
    assert s1[4].keys() == s2[4].keys()
    for k in s1[4]:
        np.testing.assert_array_equal(s1[4][k], s2[4][k], err_msg=k)


def read_run(path):
    """The run a checkpoint file holds (inside its checksummed wrapper)."""
    return torch.load(io.BytesIO(torch.load(path, weights_only=True)["payload"]), weights_only=True)


def write_run(state, path, checksum=True):
    """A checkpoint file holding `state`, with a correct checksum unless told otherwise."""
    payload = io.BytesIO()
    torch.save(state, payload)
    payload = payload.getvalue()
    digest = hashlib.sha256(payload).hexdigest() if checksum else "0" * 64
    torch.save({"format": state["format"], "sha256": digest, "payload": payload}, path)


def params(env):
    return [p.detach().clone() for p in env.model.parameters()]


# -- bad actions ---------------------------------------------------------------------------
def _ones(shape, dtype=np.int8):
    return np.ones(shape, dtype)


def _with(value, selection="batch", dtype=np.float64):
    a = valid(selection, 0).astype(dtype)
    a.flat[3] = value
    return a


def _quietly(make):
    """Build a test tensor without torch's beta, prototype and deprecation warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make()


BAD_BATCH = {
    "short": (_ones(N - 1), ValueError),
    "long": (_ones(N + 1), ValueError),
    "2-d": (_ones((B, N)), ValueError),
    "row": (_ones((1, N)), ValueError),
    "scalar": (np.int64(1), ValueError),
    "empty": (np.array([]), ValueError),
    "strings": (np.array(["1"] * N), TypeError),
    "object": (np.array([1] * N, dtype=object), TypeError),
    "complex": (_ones(N, np.complex64), TypeError),
    "two": (_with(2), ValueError),
    "half": (_with(0.5), ValueError),
    "nan": (_with(np.nan), ValueError),
    "inf": (_with(np.inf), ValueError),
    "negative": (_with(-1, dtype=np.int64), ValueError),
    "keeps-none": (np.zeros(N, np.int8), ValueError),
    "keeps-none-bool": (np.zeros(N, bool), ValueError),
    "None": (None, TypeError),
    "str": ("1" * N, TypeError),
    "bytes": (b"\x01" * N, TypeError),
    "dict": ({"mask": _ones(N)}, TypeError),
    "ragged-list": ([[1] * N, [1]], (TypeError, ValueError)),
    "list-wrong-length": ([1] * (N - 1), ValueError),
    "torch-wrong-shape": (torch.ones(B, N), ValueError),
    "torch-two": (torch.full((N,), 2), ValueError),
    "torch-nan": (torch.from_numpy(_with(np.nan)), ValueError),
    "torch-keeps-none": (torch.zeros(N, dtype=torch.bool), ValueError),
    # tensors that hold no plain values: named, with the expected shape, never a torch error
    "torch-meta": (torch.ones(N, device="meta"), TypeError),
    "torch-sparse": (torch.ones(N).to_sparse(), TypeError),
    "torch-sparse-csr": (_quietly(lambda: torch.ones(1, N).to_sparse_csr()), TypeError),
    "torch-quantized": (_quietly(lambda: torch.quantize_per_tensor(torch.ones(N), 1.0, 0, torch.quint8)), TypeError),
    "torch-nested": (_quietly(lambda: torch.nested.nested_tensor([torch.ones(N // 2)] * 2)), TypeError),
    "torch-nested-jagged": (torch.nested.nested_tensor([torch.ones(N // 2)] * 2, layout=torch.jagged), TypeError),
    "masked-array": (np.ma.masked_array(_ones(N), mask=np.arange(N) == 3), TypeError),
}
BAD_IMAGE = {
    "batch-shape": (_ones(N), ValueError),
    "transposed": (_ones((N, B)), ValueError),
    "short-batch": (_ones((B - 1, N)), ValueError),
    "3-d": (_ones((1, B, N)), ValueError),
    "two": (_with(2, "image"), ValueError),
    "nan": (_with(np.nan, "image"), ValueError),
    "negative": (_with(-3, "image", np.int64), ValueError),
    "strings": (np.full((B, N), "1"), TypeError),
    "one-row-keeps-none": (np.concatenate([_ones((B - 1, N)), np.zeros((1, N), np.int8)]), ValueError),
    "all-rows-keep-none": (np.zeros((B, N), np.int8), ValueError),
    "None": (None, TypeError),
    "torch-row-keeps-none": (torch.ones(B, N).index_fill_(0, torch.tensor([4]), 0), ValueError),
    "torch-meta": (torch.ones(B, N, device="meta"), TypeError),
    "torch-sparse": (torch.ones(B, N).to_sparse(), TypeError),
}


def _check_message(selection, name, err):
    msg = str(err)
    if "keeps-none" in name or "keep-none" in name:
        assert "at least one patch" in msg
        if name == "one-row-keeps-none":
            assert "15" in msg  # names the offending row
        elif name == "torch-row-keeps-none":
            assert "4" in msg
    else:
        assert ("(64,)" if selection == "batch" else "(16, 64)") in msg, msg  # names the expected shape
    assert "\n" not in msg
    what = {"torch-meta": "meta-device", "torch-sparse": "sparse", "torch-sparse-csr": "sparse",
            "torch-quantized": "quantized", "torch-nested": "nested", "torch-nested-jagged": "nested",
            "masked-array": "masked"}.get(name)
    if what is not None:
        assert what in msg, msg
        assert name == "masked-array" or "dense tensor of real dtype" in msg, msg


@pytest.mark.parametrize("selection,cases", [("batch", BAD_BATCH), ("image", BAD_IMAGE)])
def test_bad_actions_raise_and_change_nothing(selection, cases):
    """Every bad action raises a clear error, and the run goes on exactly as if it had
    never been sent (compared with a twin env that never saw one)."""
    env, twin = make(selection=selection), make(selection=selection)
    env.reset(seed=5)
    twin.reset(seed=5)
    assert_same_step(env.step(valid(selection, 1)), twin.step(valid(selection, 1)))
    before = params(env)
    for name, (action, error) in cases.items():
        with pytest.raises(error) as e:
            env.step(action)
        _check_message(selection, name, e.value)
    assert all(torch.equal(p, q) for p, q in zip(before, env.model.parameters()))
    for seed in (2, 3):
        assert_same_step(env.step(valid(selection, seed)), twin.step(valid(selection, seed)))


def test_bad_action_through_gym_make_wrappers():
    env = gym.make("patchenv/PatchSelection-v1", **{**TINY, "dataset": _SYNTHETIC})
    twin = make()
    env.reset(seed=1)
    twin.reset(seed=1)
    with pytest.raises(ValueError, match=r"\(64,\)"):
        env.step(np.ones(N + 1))  # the very first step, through gym.make's wrappers
    assert_same_step(env.step(valid("batch", 0)), twin.step(valid("batch", 0)))


@pytest.mark.parametrize("selection", ["batch", "image"])
def test_action_types_give_the_same_result(selection):
    """numpy (int, bool, float), lists and torch tensors (any dtype) with the same values:
    identical steps."""
    base = valid(selection, 7)
    forms = [base, base.astype(bool), base.astype(np.float32), base.astype(np.uint8), base.tolist(),
             torch.from_numpy(base), torch.from_numpy(base).bool(), torch.from_numpy(base).float(),
             torch.from_numpy(base).to(torch.bfloat16), torch.from_numpy(base).half(),
             torch.from_numpy(base).float().requires_grad_()]
    results = []
    for action in forms:
        env = make(selection=selection)
        env.reset(seed=3)
        results.append(env.step(action))
    for r in results[1:]:
        assert_same_step(r, results[0])


# -- lifecycle -----------------------------------------------------------------------------
def test_step_before_reset():
    env = make()
    with pytest.raises(gym.error.ResetNeeded, match="reset"):
        env.step(np.ones(N))
    for call in (env.evaluate, lambda: env.save_checkpoint("never-written.pt")):
        with pytest.raises(gym.error.ResetNeeded, match="reset"):
            call()
    assert not os.path.exists("never-written.pt")
    wrapped = gym.make("patchenv/PatchSelection-v1", **{**TINY, "dataset": _SYNTHETIC})
    with pytest.raises(gym.error.ResetNeeded, match="reset"):
        wrapped.step(np.ones(N))
    # The env is still usable.
    env.reset(seed=0)
    assert env.step(np.ones(N))[4]["global_step"] == 1


def test_step_after_the_episode_ended():
    env, twin = make(episode_steps=2), make(episode_steps=2)
    for e in (env, twin):
        e.reset(seed=2)
        e.step(valid("batch", 0))
        assert e.step(valid("batch", 1))[3] is True  # truncated
    with pytest.raises(gym.error.ResetNeeded, match="reset"):
        env.step(valid("batch", 2))
    with pytest.raises(gym.error.ResetNeeded, match="reset"):
        env.step(valid("batch", 2))
    for e in (env, twin):
        e.reset()
    assert_same_step(env.step(valid("batch", 2)), twin.step(valid("batch", 2)))


def test_constructor_errors_name_the_choices():
    cases = [(dict(selection="pixel"), "batch"), (dict(obs_type="raw"), "embeddings"),
             (dict(device="tpu"), "cpu"), (dict(n_patch_desired=64), "63"), (dict(n_patch_desired=0), "63"),
             (dict(batch_size=5000), "5000"), (dict(patch_size=5), "patch_size"), (dict(dim=0), "dim"),
             (dict(lr=-1.0), "lr"), (dict(alpha=1.5), "alpha"), (dict(episode_steps=0), "episode_steps"),
             (dict(amp="fp8"), "bf16"), (dict(patch_size=32), "1 patch: there is nothing to choose")]
    for kwargs, word in cases:
        with pytest.raises(ValueError, match=word):
            make(**kwargs)


# -- divergence ----------------------------------------------------------------------------
def test_huge_lr_terminates_with_finite_reward_and_no_bad_update():
    env = make(lr=1e30, obs_type="pooled")
    obs, _ = env.reset(seed=0)
    assert obs in env.observation_space
    for step in range(1, 6):
        before = params(env)
        adam_before = {k: v.clone() for k, v in env.optimizer.state_dict()["state"].get(0, {}).items()}
        obs, reward, terminated, truncated, info = env.step(np.ones(N))
        assert math.isfinite(reward) and isinstance(reward, float)
        assert obs in env.observation_space and np.isfinite(obs).all()
        assert all(torch.isfinite(p).all() for p in env.model.parameters())
        if terminated:
            break
        assert not info["diverged"]
    assert terminated and not truncated and info["diverged"] is True, f"no termination after {step} steps"
    assert math.isfinite(info["loss_term"]) and math.isfinite(info["patch_term"])
    if not math.isfinite(info["loss"]):  # the update of a non-finite loss was not applied
        assert all(torch.equal(p, q) for p, q in zip(before, env.model.parameters()))
        for k, v in env.optimizer.state_dict()["state"].get(0, {}).items():
            assert torch.equal(v, adam_before[k])
    with pytest.raises(gym.error.ResetNeeded):
        env.step(np.ones(N))
    # Continuing the broken run: the loss is now non-finite and its update is not applied.
    obs, _ = env.reset()
    assert obs in env.observation_space
    before = params(env)
    _, reward, terminated, _, info = env.step(np.ones(N))
    assert terminated and info["diverged"] and math.isfinite(reward) and not math.isfinite(info["loss"])
    assert all(torch.equal(p, q) for p, q in zip(before, env.model.parameters()))


def test_nan_loss_is_not_trained_on():
    """A non-finite loss (here from a NaN weight) ends the episode, flags it, keeps the
    reward finite (also from a custom reward function) and leaves the weights as they were."""
    env = make(reward_fn=lambda s: s.loss)  # would be NaN
    env.reset(seed=0)
    env.step(np.ones(N))
    with torch.no_grad():
        env.model.linear_head[-1].weight[0, 0] = float("nan")
    before = params(env)
    _, reward, terminated, truncated, info = env.step(np.ones(N))
    assert terminated and not truncated and info["diverged"] is True
    assert reward == 0.0 and math.isnan(info["loss"]) and info["loss_term"] == 0.0
    for p, q in zip(before, env.model.parameters()):
        torch.testing.assert_close(p, q.detach(), equal_nan=True, atol=0, rtol=0)
    # the non-finite gradient is discarded: FlatAdam zeroes its buffer in place (never None)
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in env.model.parameters())


# -- checkpoints ---------------------------------------------------------------------------
@pytest.mark.parametrize("selection,obs_type", [("batch", "embeddings"), ("image", "attention")])
def test_checkpoint_continues_bit_identically(tmp_path, selection, obs_type):
    acts = [valid(selection, s) for s in range(10)]
    env = make(selection=selection, obs_type=obs_type, episode_steps=6)
    env.reset(seed=3)
    steps = [env.step(a) for a in acts[:4]]
    path = tmp_path / "run" / "ckpt.pt"
    env.save_checkpoint(path)
    assert os.listdir(path.parent) == ["ckpt.pt"]  # no temp file left behind
    ref = [env.step(a) for a in acts[4:6]]
    ref_reset = env.reset()[0]
    ref += [env.step(a) for a in acts[6:10]]
    ref_new_run = env.reset(options={"new_run": True})[0]

    fresh = make(selection=selection, obs_type=obs_type, episode_steps=6)
    pending = fresh.load_checkpoint(path)  # no reset needed
    np.testing.assert_array_equal(pending, steps[-1][0])
    got = [fresh.step(a) for a in acts[4:6]]
    with pytest.raises(gym.error.ResetNeeded):  # the episode counter came back too
        fresh.step(acts[6])
    np.testing.assert_array_equal(fresh.reset()[0], ref_reset)
    got += [fresh.step(a) for a in acts[6:10]]
    for r, g in zip(ref, got):
        assert_same_step(r, g)
    np.testing.assert_array_equal(fresh.reset(options={"new_run": True})[0], ref_new_run)  # np_random restored


def test_checkpoint_loads_into_a_gym_made_env_without_reset(tmp_path):
    # Through gymnasium.make (the registered id and its wrappers): no reset after loading.
    acts = [valid("batch", s) for s in range(6)]
    env = gym.make("patchenv/PatchSelection-v1", **TINY)
    env.reset(seed=5)
    for a in acts[:4]:
        env.step(a)
    env.unwrapped.save_checkpoint(tmp_path / "c.pt")
    ref = [env.step(a) for a in acts[4:]]
    fresh = gym.make("patchenv/PatchSelection-v1", **TINY)
    fresh.unwrapped.load_checkpoint(tmp_path / "c.pt")
    for r, a in zip(ref, acts[4:]):
        assert_same_step(r, fresh.step(a))


def test_checkpoint_before_the_first_step_keeps_the_loss_reference_unset(tmp_path):
    env = make()
    env.reset(seed=8)
    env.save_checkpoint(tmp_path / "c.pt")
    fresh = make()
    fresh.load_checkpoint(tmp_path / "c.pt")
    assert_same_step(fresh.step(valid("batch", 0)), env.step(valid("batch", 0)))
    assert fresh.step(valid("batch", 1))[4]["loss_term"] != 1.0


def test_failed_save_leaves_the_older_checkpoint_intact(tmp_path, monkeypatch):
    env = make()
    env.reset(seed=1)
    path = tmp_path / "ckpt.pt"
    env.save_checkpoint(path)
    good = path.read_bytes()
    env.step(np.ones(N))

    real_write = Path.write_bytes

    def broken_write(self, data):  # the checkpoint is serialised in memory; writing it to disk fails
        real_write(self, b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_bytes", broken_write)
    with pytest.raises(OSError, match="disk full"):
        env.save_checkpoint(path)
    monkeypatch.undo()
    assert path.read_bytes() == good and os.listdir(tmp_path) == ["ckpt.pt"]
    fresh = make()
    fresh.load_checkpoint(path)
    assert fresh.global_step == 0


def test_load_checkpoint_errors(tmp_path):
    env = make()
    env.reset(seed=1)
    env.step(np.ones(N))
    env.save_checkpoint(tmp_path / "c.pt")
    for other in (dict(dim=16), dict(lr=1e-2), dict(batch_size=8)):
        target = make(**other)
        with pytest.raises(ValueError, match="another configuration"):
            target.load_checkpoint(tmp_path / "c.pt")
        assert target.model is None  # nothing was half-loaded
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        make().load_checkpoint(tmp_path / "junk.pt")
    torch.save({"some": "dict"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a patchenv checkpoint"):
        make().load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="missing.pt"):
        make().load_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_of_the_previous_vit_architecture_is_refused(tmp_path):
    """A v0 checkpoint holds the newer vit-pytorch head (a final LayerNorm on every token,
    a bare Linear head): its weights would not fit, or would load under the wrong
    meaning, so it is refused with the reason and nothing is half-loaded."""
    env = make()
    env.reset(seed=1)
    env.step(np.ones(N))
    env.save_checkpoint(tmp_path / "c.pt")
    state = read_run(tmp_path / "c.pt")
    assert state["format"] == "patchenv-checkpoint-v2"
    model = state["model"]
    d = model["linear_head.0.weight"].shape[0]
    model["transformer.norm.weight"], model["transformer.norm.bias"] = torch.ones(d), torch.zeros(d)
    model["linear_head.weight"], model["linear_head.bias"] = model.pop("linear_head.1.weight"), model.pop("linear_head.1.bias")
    del model["linear_head.0.weight"], model["linear_head.0.bias"]
    torch.save({**state, "format": "patchenv-checkpoint-v0", "model": model}, tmp_path / "old.pt")
    target = make()
    with pytest.raises(ValueError, match=r"old\.pt is a patchenv-checkpoint-v0 checkpoint: .*LayerNorm.*start a new run"):
        target.load_checkpoint(tmp_path / "old.pt")
    assert target.model is None


def test_checkpoint_from_another_device_type_loads_and_trains_the_saved_batch(tmp_path):
    # A CUDA generator state is 16 bytes, a CPU one 5056: a run moved between device
    # types reseeds its data order deterministically and trains the saved pending batch.
    env = make()
    env.reset(seed=0)
    env.step(valid("batch", 0))
    env.save_checkpoint(tmp_path / "ck.pt")
    state = read_run(tmp_path / "ck.pt")
    state["data_gen"] = torch.arange(16, dtype=torch.uint8)  # the shape of a CUDA generator's state
    write_run(state, tmp_path / "cuda-like.pt")
    steps = []
    for name in ("ck.pt", "cuda-like.pt", "cuda-like.pt"):
        other = make()
        other.load_checkpoint(tmp_path / name)
        steps.append(other.step(valid("batch", 1)))
    assert steps[0][4]["loss"] == steps[1][4]["loss"]  # the pending batch is the saved one
    assert_same_step(steps[1], steps[2])  # the reseeding is deterministic


def test_cuda_graph_needs_cuda_and_excludes_compile():
    with pytest.raises(ValueError, match="needs a CUDA device"):
        make(cuda_graph=True)  # TINY runs on the CPU
    with pytest.raises(ValueError, match="alternatives"):
        make(cuda_graph=True, compile=True)


def test_render_greys_out_the_dropped_patches_of_the_batch_just_trained():
    env = gym.make("patchenv/PatchSelection-v1", render_mode="rgb_array", **{**TINY, "dataset": _SYNTHETIC})
    env.reset(seed=0)
    before = env.render()
    assert before.dtype == np.uint8 and before.ndim == 3 and before.shape[2] == 3
    mask = np.zeros(N, dtype=np.int8)
    mask[:8] = 1  # the top row of the 8x8 grid
    env.step(mask)
    frame = env.render()
    # By hand: the first image of the trained batch, denormalised, upscaled 4x; its top row
    # of patches (16 frame pixels) as it is, the rest blended towards grey.
    u = env.unwrapped
    x = (u.run.rendered[0][0] * u.setup.std[0] + u.setup.mean[0]).clamp(0, 1).permute(1, 2, 0).numpy()
    x = x.repeat(4, axis=0).repeat(4, axis=1)
    want = np.where(np.arange(128)[:, None, None] < 16, x, 0.25 * x + 0.375)
    np.testing.assert_array_equal(frame[:, :128], (want * 255).round().astype(np.uint8))
    with pytest.raises(ValueError, match="render_mode"):
        make(render_mode="human")


def test_record_video_films_an_episode(tmp_path):
    """Gymnasium's RecordVideo writes an mp4 of render()'s frames: read back, one frame per
    reset and step, each of render()'s size, at the env's render_fps."""
    pytest.importorskip("moviepy", reason="RecordVideo writes through moviepy (pip install -e '.[test]')")
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="moviepy's ffmpeg reader")
    from gymnasium.wrappers import RecordVideo

    env = gym.make("patchenv/PatchSelection-v1", render_mode="rgb_array", episode_steps=4,
                   **{**TINY, "dataset": _SYNTHETIC})
    env = RecordVideo(env, str(tmp_path / "video"), episode_trigger=lambda episode: True, disable_logger=True)
    env.reset(seed=0)
    steps, done = 0, False
    while not done:
        _, _, terminated, truncated, _ = env.step(valid("batch", steps))
        steps, done = steps + 1, terminated or truncated
    height, width, _ = env.unwrapped.render().shape
    env.close()
    (video,) = (tmp_path / "video").glob("*.mp4")
    assert video.stat().st_size > 0
    frames = imageio_ffmpeg.read_frames(str(video))
    meta = next(frames)
    assert meta["size"] == (width, height) and meta["fps"] == env.unwrapped.metadata["render_fps"]
    assert sum(1 for _ in frames) == steps + 1 == 5


def test_copying_an_env_says_to_use_checkpoints():
    import copy
    import pickle

    env = make()
    env.reset(seed=0)
    for copier in (copy.deepcopy, pickle.dumps):
        with pytest.raises(TypeError, match="save_checkpoint"):
            copier(env)


@pytest.mark.parametrize("bad", [lambda s: 1 / 0, lambda s: "high", lambda s: np.array([1.0, 2.0]),
                                 lambda s: float("nan"), lambda s: True])
def test_a_failing_reward_fn_leaves_the_env_consistent(bad):
    env = make(reward_fn=bad, episode_steps=3)
    env.reset(seed=0)
    with pytest.raises((RuntimeError, TypeError, ValueError), match="training step 1 was applied"):
        env.step(valid("batch", 0))
    assert env.global_step == 1  # the step happened and is counted; the next one goes on
    assert env.train_time_s == env.last_step_time_s > 0  # and timed
    env.reward_fn = lambda s: 0.5
    assert env.step(valid("batch", 1))[1] == 0.5 and env.global_step == 2
    assert env.step(valid("batch", 2))[3]  # truncated on schedule: the failed step counted in the episode


def test_a_damaged_checkpoint_is_refused_before_the_running_run_changes(tmp_path):
    env = make()
    env.reset(seed=0)
    env.step(valid("batch", 0))
    env.save_checkpoint(tmp_path / "ck.pt")
    raw = bytearray((tmp_path / "ck.pt").read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte inside the stored run
    (tmp_path / "flipped.pt").write_bytes(bytes(raw))
    state = read_run(tmp_path / "ck.pt")
    del state["batch_x"]
    write_run(state, tmp_path / "incomplete.pt")
    state = read_run(tmp_path / "ck.pt")
    state["model"]["linear_head.1.weight"] = torch.zeros(3, 3)  # readable, wrong shape
    write_run(state, tmp_path / "wrong-shape.pt")
    running = make()
    running.reset(seed=5)
    running.step(valid("batch", 1))
    before = params(running)
    for name, words in (("flipped.pt", "damaged|cannot read"), ("incomplete.pt", "missing"),
                        ("wrong-shape.pt", "cannot restore")):
        with pytest.raises(ValueError, match=words):
            running.load_checkpoint(tmp_path / name)
        assert all(torch.equal(a, b) for a, b in zip(params(running), before)), name  # untouched
        assert running.global_step == 1
    running.step(valid("batch", 2))  # and it trains on


def test_cuda_graph_default_is_eager_on_the_cpu_and_the_cli_can_say_either():
    import argparse

    from patchenv.env.config import add_env_arguments, env_kwargs_from_args

    assert make().unwrapped.cuda_graph is False and make().unwrapped.run.graphed is None  # None on a CPU: eager
    assert make(compile=False, cuda_graph=False).unwrapped.cuda_graph is False
    parser = add_env_arguments(argparse.ArgumentParser(), include=["cuda_graph"])
    assert env_kwargs_from_args(parser.parse_args([])) == {}
    assert env_kwargs_from_args(parser.parse_args(["--cuda-graph"])) == {"cuda_graph": True}
    assert env_kwargs_from_args(parser.parse_args(["--no-cuda-graph"])) == {"cuda_graph": False}

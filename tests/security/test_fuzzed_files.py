"""Every file patchenv reads back, with bytes flipped, cut off or replaced (seeded, hundreds
of variants): each read is a one-line error naming the file, or, where the reader's
contract is to rebuild (a finished run's metrics.json: the run is run again), that; never
a traceback, a hang, or a run that continues from anything but what was saved."""
import hashlib
import io
import random
import shutil
import signal
from contextlib import contextmanager

import gymnasium as gym
import numpy as np
import pytest
import torch

import agents
from agents.keeprate import packaged_policy
from agents.keeprate_file import read_policy
from benchmarks import compare_selectors
from benchmarks.sweep import plan
from benchmarks.sweep.results import load_previous
from tiny_env import TINY
from patchenv import checked_json, data
from patchenv.env import PatchSelectionEnv
from patchenv.population import PopulationEnv
from patchenv.run import Budget, RunError, run_training
from patchenv.run.resume_points import load_checkpoint

_SYNTHETIC = data.synthetic()
N = 64


def variants(original: bytes, count: int, seed: int):
    """(label, bytes): `count` damaged copies of `original`, a third each with 1-8 bits
    flipped, cut short, or a span of 1-64 bytes replaced. Half fall in the first or last
    2 KiB, where the headers, the pickle and the zip directory are."""
    rng = np.random.default_rng(seed)
    size = len(original)
    made = 0
    while made < count:
        if rng.random() < 0.5:
            edge = min(2048, size)
            pos = int(rng.integers(0, edge)) if rng.random() < 0.5 else size - 1 - int(rng.integers(0, edge))
        else:
            pos = int(rng.integers(0, size))
        damaged = bytearray(original)
        kind = ("flip", "cut", "replace")[made % 3]
        if kind == "flip":
            for _ in range(int(rng.integers(1, 9))):
                p = min(size - 1, pos + int(rng.integers(0, 16)))
                damaged[p] ^= 1 << int(rng.integers(0, 8))
        elif kind == "cut":
            damaged = damaged[:pos]
        else:
            span = int(rng.integers(1, 65))
            damaged[pos:pos + span] = rng.integers(0, 256, min(span, size - pos), dtype=np.uint8).tobytes()
        if bytes(damaged) == original:
            continue
        made += 1
        yield f"{kind}@{pos}", bytes(damaged)


@contextmanager
def deadline(seconds: int, label: str):
    """A read that takes longer than `seconds` fails the test (a hang, or a runaway read)."""
    def hung(*_):
        raise AssertionError(f"{label}: the read took over {seconds} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def fingerprint(obj) -> str:
    """A hash of nested dicts, lists, tensors, arrays and plain values."""
    h = hashlib.sha256()

    def walk(x):
        if isinstance(x, torch.Tensor):
            h.update(str((x.dtype, tuple(x.shape))).encode())
            h.update(x.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(x, np.ndarray):
            h.update(str((x.dtype, x.shape)).encode())
            h.update(np.ascontiguousarray(x).tobytes())
        elif isinstance(x, dict):
            for k in sorted(x, key=str):
                h.update(repr(k).encode())
                walk(x[k])
        elif isinstance(x, (list, tuple)):
            h.update(b"[")
            for v in x:
                walk(v)
            h.update(b"]")
        else:
            h.update(repr(x).encode())

    walk(obj)
    return h.hexdigest()


def check(path, original: bytes, count: int, seed: int, read, state):
    """Write each variant of `original` to `path`, `read` it, and check the outcome: a
    one-line ValueError (or RunError) naming the file, or a read after which `state()` is
    what it was after reading the original. `path` holds the original again at the end."""
    want = state()
    outcomes = {"refused": 0, "read": 0}
    try:
        for label, damaged in variants(original, count, seed):
            path.write_bytes(damaged)
            with deadline(20, f"{path.name} {label}"):
                try:
                    read()
                except (ValueError, RunError) as e:
                    message = str(e)
                    assert "\n" not in message and path.name in message, f"{label}: {message!r}"
                    outcomes["refused"] += 1
                else:
                    outcomes["read"] += 1
            assert state() == want, f"{path.name} {label}: read as something else than what was saved"
    finally:
        path.write_bytes(original)
    assert outcomes["refused"] > count // 2, outcomes  # most damage is caught, not read as it happens to fit
    return outcomes


def test_env_checkpoints(tmp_path):
    env = PatchSelectionEnv(**{**TINY, "dataset": _SYNTHETIC})
    env.reset(seed=0)
    env.step(np.ones(N, dtype=np.int8))
    env.save_checkpoint(tmp_path / "env.pt")
    target = PatchSelectionEnv(**{**TINY, "dataset": _SYNTHETIC})
    target.load_checkpoint(tmp_path / "env.pt")
    check(tmp_path / "env.pt", (tmp_path / "env.pt").read_bytes(), 240, 0,
          lambda: target.load_checkpoint(tmp_path / "env.pt"), lambda: target.sealed_checkpoint()["sha256"])


def test_population_checkpoints(tmp_path):
    envs = PopulationEnv(2, **{**TINY, "dataset": _SYNTHETIC})
    envs.reset(seed=0)
    envs.step(np.ones((2, N), dtype=np.int8))
    envs.save_checkpoint(tmp_path / "pop.pt")
    target = PopulationEnv(2, **{**TINY, "dataset": _SYNTHETIC})
    target.load_checkpoint(tmp_path / "pop.pt")

    def state():
        return [run.sealed_checkpoint()["sha256"] for run in target.runs], target.train_time_s

    check(tmp_path / "pop.pt", (tmp_path / "pop.pt").read_bytes(), 120, 1,
          lambda: target.load_checkpoint(tmp_path / "pop.pt"), state)
    envs.close()
    target.close()


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A finished 1-epoch run of agentvit (a torch agent file) with its checkpoint kept."""
    out = tmp_path_factory.mktemp("fuzz") / "run"
    agent = agents.make("agentvit", seed=0, frequency=4)
    env = gym.make("patchenv/PatchSelection-v1", **{**TINY, "dataset": _SYNTHETIC, "batch_size": 64},
                   **agent.env_kwargs())
    run_training(env, agent, out, budget=Budget(epochs=1), show_progress=False)
    env.close()
    return out


@pytest.mark.parametrize("name,count,seed", [("env.pt", 60, 10), ("rng.pt", 60, 11), ("agent.pt", 90, 12),
                                             ("progress.json", 120, 13)])
def test_a_run_folders_checkpoint(run_folder, name, count, seed):
    """`patchenv train --resume`'s reading: env, agent, every generator, the runner's
    state. After a refused or an accepted read, all of them are what was saved."""
    agent = agents.make("agentvit", seed=0, frequency=4)
    env = gym.make("patchenv/PatchSelection-v1", **{**TINY, "dataset": _SYNTHETIC, "batch_size": 64},
                   **agent.env_kwargs())
    loaded = {}

    def read():
        loaded["runner"] = load_checkpoint(run_folder, env, agent)

    def state():
        return (env.unwrapped.sealed_checkpoint()["sha256"], fingerprint(agent.state_dict()),
                fingerprint(torch.get_rng_state()), fingerprint(np.random.get_state()), hash(random.getstate()),
                repr(loaded["runner"]))

    read()
    folder = run_folder / checked_json.read(run_folder / "progress.json")["checkpoint"]
    path = run_folder / name if name == "progress.json" else folder / name
    check(path, path.read_bytes(), count, seed, read, state)
    env.close()


def test_a_finished_runs_metrics_are_used_intact_or_the_run_is_run_again(tmp_path):
    ray_backend = pytest.importorskip("benchmarks.sweep.ray_backend")
    out = tmp_path / "sweep"
    args = ["--dataset", "synthetic", "--preset", "tiny", "--epochs", "1", "--device", "cpu", "--seeds", "0",
            "--selectors", "all", "--no-progress", "--out", str(out)]
    assert compare_selectors.main(args) == 0
    cfg = compare_selectors.make_config(compare_selectors.parse_args(compare_selectors.build_parser(), args))
    folder = plan.run_dir(out, "all", 0)
    config = plan.run_config(cfg, "all", 0, Budget(epochs=1))
    metrics = ray_backend.finished_before(folder, config)
    assert metrics is not None
    check(folder / "metrics.json", (folder / "metrics.json").read_bytes(), 120, 2,
          lambda: _used_intact(ray_backend.finished_before(folder, config), metrics, folder / "metrics.json"),
          lambda: None)
    # results.json: --resume keeps its rows, or refuses it in one line.
    rows = load_previous(out, cfg)
    check(out / "results.json", (out / "results.json").read_bytes(), 120, 3,
          lambda: _same_rows(load_previous(out, cfg), rows, out / "results.json"), lambda: None)


def _used_intact(got, want, path):
    """finished_before's None (its contract: the run is run again) as the refusal `check`
    counts; metrics it does use must be the saved ones."""
    if got is None:
        raise ValueError(f"{path} not used: the run is run again")
    assert got == want, f"{path}: metrics read differ from the saved ones"


def _same_rows(got, want, path):
    assert got == want, f"{path}: rows read differ from the saved ones"


def test_agent_and_policy_zips(tmp_path):
    src = packaged_policy("progress")
    model, _ = read_policy(src)
    obs = np.linspace(-1, 1, model.observation_space.shape[0], dtype=np.float32)
    q = model.q_net(torch.as_tensor(obs)[None]).detach()
    shutil.copy(src, tmp_path / "policy.zip")
    last = {}

    def read():
        last["model"], _ = read_policy(tmp_path / "policy.zip")

    def state():  # the policy read last computes the saved one's Q-values
        return fingerprint(last.get("model", model).q_net(torch.as_tensor(obs)[None]).detach())

    assert state() == fingerprint(q)
    check(tmp_path / "policy.zip", src.read_bytes(), 60, 4, read, state)


def test_agent_json_files(tmp_path):
    agent = agents.make("random", seed=3, k=16)
    env = PatchSelectionEnv(**{**TINY, "dataset": _SYNTHETIC, **agent.env_kwargs()})
    obs, _ = env.reset(seed=0)
    agent.setup(env)
    for _ in range(3):
        agent.act(obs, explore=True)
    agent.save(tmp_path / "agent.json")
    target = agents.make("random", seed=3, k=16)
    target.load(tmp_path / "agent.json")
    check(tmp_path / "agent.json", (tmp_path / "agent.json").read_bytes(), 120, 5,
          lambda: target.load(tmp_path / "agent.json"), lambda: fingerprint(target.state_dict()))


def test_the_variants_are_seeded_and_damage_the_file():
    original = bytes(range(256)) * 40
    a = list(variants(original, 30, 7))
    assert a == list(variants(original, 30, 7)) and len({v for _, v in a}) == 30
    assert all(v != original for _, v in a)
    assert {label.split("@")[0] for label, _ in a} == {"flip", "cut", "replace"}
    assert io.BytesIO(a[1][1]).getbuffer().nbytes < len(original)  # a cut

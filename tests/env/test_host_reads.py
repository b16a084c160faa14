"""How often one step reads the device's data on the host, counted on the CPU, and that
the numbers of a step that reads nothing are the numbers of one that does.

On a GPU each such read (``.item()``, ``float()``/``bool()`` of a tensor, ``.tolist()``,
``.numpy()``, ``nonzero``, ``equal``) waits for the device to finish. A
`TorchDispatchMode` sees every operator a step runs, on any device, so the reads can be
counted without a GPU. With ``tensor_obs=True`` and a host action a single env's step
reads nothing (the reward, the episode's end and the info's measured numbers stay on the
device); a torch action is read once (its kept count decides the sequence length). The
numpy path reads once (the observation and every number, in one copy), and so does a
population's step with ``tensor_obs=True`` (which runs ended: the next step's autoresets
are the host's). A change that adds a read fails here.
"""
import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tiny_env import TINY
from patchenv import data
from patchenv.env import PatchSelectionEnv
from patchenv.population import PopulationEnv

_SYNTHETIC = data.synthetic()
N = 64
# The operators that hand a device's data to the host.
READS = {"aten._local_scalar_dense.default", "aten.nonzero.default", "aten.is_nonzero.default",
         "aten.equal.default"}


class HostReads(TorchDispatchMode):
    """Counts the operators of READS run under it, and calls of Tensor.numpy/tolist/
    __array__ (which copy to the host without an operator this mode sees)."""

    def __init__(self):
        super().__init__()
        self.count = 0
        self._saved = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func) in READS:
            self.count += 1
        return func(*args, **(kwargs or {}))

    def __enter__(self):
        for name in ("numpy", "tolist", "__array__"):
            original = getattr(torch.Tensor, name)
            self._saved[name] = original

            def counted(tensor, *a, _original=original, **k):
                self.count += 1
                return _original(tensor, *a, **k)

            setattr(torch.Tensor, name, counted)
        return super().__enter__()

    def __exit__(self, *exc):
        for name, original in self._saved.items():
            setattr(torch.Tensor, name, original)
        return super().__exit__(*exc)


def reads_of(step) -> int:
    with HostReads() as reads:
        step()
    return reads.count


def test_the_counter_sees_each_kind_of_read():
    x = torch.arange(4.0)
    assert reads_of(lambda: x.sum().item()) == 1
    assert reads_of(lambda: bool((x > 1).any())) == 1
    assert reads_of(lambda: x.tolist()) == 1
    assert reads_of(lambda: x.numpy()) == 1
    assert reads_of(lambda: np.asarray(x)) >= 1
    assert reads_of(lambda: x.nonzero()) == 1
    assert reads_of(lambda: torch.equal(x, x)) == 1
    assert reads_of(lambda: x * 2 + 1) == 0


# 16x16 images, 4x4 patches (N = 16), 64 training images: 4 steps an epoch, so a few steps
# cross an epoch's end and an episode's.
SMALL = data.synthetic(n_train=64, n_test=32, image_size=16, seed=3)
KW = dict(TINY, dataset=SMALL, eval_batch_size=32, n_patch_desired=8)
SMALL_N = 16


def small_action(selection: str, t: int, rng: np.random.Generator):
    if selection == "count":
        return int(rng.integers(0, SMALL_N))
    shape = (SMALL_N,) if selection == "batch" else (KW["batch_size"], SMALL_N)
    a = (rng.random(shape) < 0.3 + 0.1 * (t % 5)).astype(np.int8)
    a[..., 0] = 1
    return a


@pytest.mark.parametrize("tensor_obs,action,most", [(True, "numpy", 0), (True, "count", 0), (True, "image", 0),
                                                    (True, "torch", 1), (False, "numpy", 1)])
def test_a_single_env_step_reads_the_device_only_where_it_must(tensor_obs, action, most):
    # "image": per-image rows of unequal counts, padded on the host
    selection = action if action in ("count", "image") else "batch"
    env = PatchSelectionEnv(**KW, selection=selection, obs_type="embeddings", episode_steps=10, tensor_obs=tensor_obs)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    counts = []
    for t in range(6):  # across the epoch's end (4 steps)
        a = small_action(selection, t, rng)
        a = torch.from_numpy(a) if action == "torch" else a
        counts.append(reads_of(lambda: env.step(a)))
    assert max(counts) <= most, counts


def test_a_probe_step_reads_once_and_the_others_not_at_all():
    env = PatchSelectionEnv(**KW, selection="count", obs_type="progress", probe_every=3, probe_size=16,
                            val_fraction=0.25, episode_steps=10, tensor_obs=True)
    env.reset(seed=0)
    counts = [reads_of(lambda: env.step(3)) for _ in range(6)]
    assert counts == [0, 0, 1, 0, 0, 1], counts


@pytest.mark.parametrize("tensor_obs", [False, True])
def test_a_population_step_reads_the_device_once(tensor_obs):
    envs = PopulationEnv(2, **{**TINY, "dataset": _SYNTHETIC, "tensor_obs": tensor_obs})
    envs.reset(seed=0)
    actions = np.ones((2, N), dtype=np.int8)
    actions[1, ::2] = 0
    counts = [reads_of(lambda: envs.step(actions)) for _ in range(3)]
    assert max(counts) <= 1, counts
    envs.close()


def host(value):
    """A tensor_obs value as the numpy path gives it."""
    if isinstance(value, torch.Tensor):
        return value.cpu().numpy() if value.dim() else value.item()
    return value


def assert_same_step(got: tuple, want: tuple, t: int) -> None:
    """`got` (a tensor_obs step) holds `want`'s (the numpy path's) numbers bit for bit."""
    (obs, reward, terminated, truncated, info), (w_obs, w_reward, w_terminated, w_truncated, w_info) = got, want
    assert isinstance(obs, torch.Tensor) and np.array_equal(obs.numpy(), w_obs, equal_nan=True), t
    assert type(w_reward) is float and type(w_terminated) is bool and type(w_truncated) is bool
    assert (host(reward), host(terminated), host(truncated)) == (w_reward, w_terminated, w_truncated), t
    assert info.keys() == w_info.keys(), t
    for key, value in w_info.items():
        mine = host(info[key])
        if isinstance(value, np.ndarray):
            assert np.array_equal(mine, value), (t, key)
        else:
            assert type(mine) is type(value) and (mine == value or mine != mine and value != value), (t, key)


@pytest.mark.parametrize("config", [
    dict(selection="batch", obs_type="embeddings"),
    dict(selection="image", obs_type="attention", loss_ref_step=3),
    dict(selection="count", obs_type="progress", reward="progress", probe_every=2, probe_size=16, val_fraction=0.25),
])
def test_a_tensor_obs_step_gives_the_numpy_steps_numbers(config):
    """Over two epochs, an episode's end and a forced divergence, the tensor_obs env's
    observations, rewards, ends and info equal the numpy path's bit for bit."""
    envs = [PatchSelectionEnv(**KW, **config, episode_steps=5, tensor_obs=t) for t in (True, False)]
    for env in envs:
        env.reset(seed=4)
    rng = np.random.default_rng(1)
    ends = []
    for t in range(10):
        broken = t == 6
        if broken:  # a NaN weight: the loss is not finite, the update skipped, the episode over
            for env in envs:
                with torch.no_grad():
                    saved = env.model.linear_head[-1].weight[0, 0].item()
                    env.model.linear_head[-1].weight[0, 0] = float("nan")
        a = small_action(config["selection"], t, rng)
        got, want = (env.step(a) for env in envs)
        assert_same_step(got, want, t)
        if broken:
            assert want[2] and want[4]["diverged"]
            for env in envs:
                with torch.no_grad():
                    env.model.linear_head[-1].weight[0, 0] = saved
        if want[2] or want[3]:
            ends.append((t, want[2]))
            o_got, o_want = (env.reset()[0] for env in envs)
            assert np.array_equal(o_got.numpy(), o_want)
    assert ends == [(4, False), (6, True)]


def test_a_tensor_obs_population_gives_the_numpy_populations_numbers():
    """Three runs, one whose weights overflow (it diverges, autoresets, diverges again):
    every number of the tensor_obs population's steps is the numpy population's."""
    pops = [PopulationEnv(3, **KW, selection="batch", obs_type="pooled", episode_steps=5, tensor_obs=t)
            for t in (True, False)]
    for pop in pops:
        pop.reset(seed=2)
    rng = np.random.default_rng(2)
    for t in range(9):
        if t == 3:
            for pop in pops:
                with torch.no_grad():
                    pop.runs[1].model.to_patch_embedding[1].weight.fill_(float("inf"))
        a = np.stack([small_action("batch", t + i, rng) for i in range(3)])
        (obs, rewards, terminated, truncated, info), want = (pop.step(a) for pop in pops)
        assert np.array_equal(obs.numpy(), want[0], equal_nan=True), t
        for mine, value in zip((rewards, terminated, truncated), want[1:4]):
            assert isinstance(mine, torch.Tensor) and np.array_equal(mine.numpy(), value), t
        assert info.keys() == want[4].keys(), t
        for key, value in want[4].items():
            assert np.array_equal(host(info[key]), value, equal_nan=value.dtype.kind == "f"), (t, key)
        assert want[2][1] == (t in (3, 5, 7)), t
    for pop in pops:
        pop.close()

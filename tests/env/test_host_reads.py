"""How often one step reads the device's data on the host, counted on the CPU.

On a GPU each such read (``.item()``, ``float()``/``bool()`` of a tensor, ``.tolist()``,
``.numpy()``, ``nonzero``, ``equal``) waits for the device to finish. A
`TorchDispatchMode` sees every operator a step runs, on any device, so the reads can be
counted without a GPU. Today a step reads twice with a host action (the loss, accuracy
and gradient norm the reward needs; the observation, or the check that it is finite) and
once more with a torch action on the device (its kept count decides the sequence
length). These tests hold that line: a change that adds a read fails here. The aim, not
reached yet, is none with ``tensor_obs=True`` and a host action.
"""
import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import TINY
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


@pytest.mark.parametrize("tensor_obs", [False, True])
@pytest.mark.parametrize("action", ["numpy", "torch"])
def test_a_single_env_step_reads_the_device_at_most_twice_with_a_host_action(tensor_obs, action):
    env = PatchSelectionEnv(**{**TINY, "dataset": _SYNTHETIC, "tensor_obs": tensor_obs})
    env.reset(seed=0)
    mask = np.ones(N, dtype=np.int8)
    mask[::3] = 0
    a = mask if action == "numpy" else torch.from_numpy(mask)
    env.step(a)  # the first step sets L(ref): not the steady state
    counts = [reads_of(lambda: env.step(a)) for _ in range(3)]
    assert max(counts) <= (2 if action == "numpy" else 3), counts


def test_a_population_step_reads_the_device_at_most_twice():
    envs = PopulationEnv(2, **{**TINY, "dataset": _SYNTHETIC, "tensor_obs": True})
    envs.reset(seed=0)
    actions = np.ones((2, N), dtype=np.int8)
    envs.step(actions)
    counts = [reads_of(lambda: envs.step(actions)) for _ in range(3)]
    assert max(counts) <= 2, counts
    envs.close()

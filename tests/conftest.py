"""Shared test configuration: a tiny ViT on synthetic data, CPU only."""
import pytest
import torch

import patchenv  # noqa: F401  (registers the env ids)
from patchenv import registry

# A ViT small enough that a test trains it for real on a 2-core CI machine.
TINY = dict(dataset="synthetic", batch_size=16, patch_size=4, dim=32, depth=2, heads=2,
            dim_head=16, mlp_dim=64, device="cpu")


@pytest.fixture
def tiny_kwargs():
    return dict(TINY)


@pytest.fixture(autouse=True)
def _fixed_threads():
    # One intra-op thread: tiny models gain nothing from two, and on a shared 2-core
    # machine two threads spin against other processes (a tiny step measured ~100x
    # slower under load). Bit-exact comparisons also need one fixed thread count.
    torch.set_num_threads(1)
    yield


@pytest.fixture
def restore_registry():
    """Agents a test registers in-process are forgotten after it."""
    saved = dict(registry._REGISTRY)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)

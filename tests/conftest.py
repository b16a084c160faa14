"""Shared test configuration: a tiny ViT on synthetic data, CPU only."""
import pytest
import torch

import patchenv  # noqa: F401  (registers the env ids)

# The acceptance configuration from the issues: small enough for a 2-core CI machine.
TINY = dict(dataset="synthetic", batch_size=16, patch_size=4, dim=32, depth=2, heads=2,
            dim_head=16, mlp_dim=64, device="cpu")


@pytest.fixture
def tiny_kwargs():
    return dict(TINY)


@pytest.fixture(autouse=True)
def _fixed_threads():
    # Bit-exact comparisons need the same thread count in both runs.
    torch.set_num_threads(2)
    yield

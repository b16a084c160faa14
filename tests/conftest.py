"""Shared test configuration: a tiny ViT on synthetic data, CPU only."""
import os

# Before torch loads OpenMP, which reads it once: threads waiting for work sleep instead of
# spinning. The tests that run two threads (--cpus-per-run 2, a multithreaded parent) share
# two cores with a second pytest-xdist worker and other processes; spinning, a 3 s run took
# 50 to 100 s on a loaded machine. The subprocesses the tests start inherit it. A value the
# user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

import patchenv  # noqa: F401  (registers the env ids)
from patchenv import registry
from tiny_env import TINY


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


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`make test`: --dist loadgroup) a module-scoped fixture is built
    once in every worker that runs one of the module's tests. The modules that have one
    share something costly or single (a trained policy, a finished run, a device report, a
    private local Ray, which must not be started twice at once), so all the tests of such a
    module go to one worker, as one xdist group named after the module."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        if any(defs and defs[-1].scope == "module" for defs in info.name2fixturedefs.values()):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))

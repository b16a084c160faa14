"""patchenv: which image patches should a Vision Transformer train on? A Gymnasium env.

Importing the package registers the environments:

- ``patchenv/PatchSelection-v1``: generic; its defaults are the paper's CIFAR-10 setup.
- ``patchenv/CIFAR10-v1``: CIFAR-10 (``download=True`` fetches it).
- ``patchenv/FashionMNIST-v1``: Fashion-MNIST (offline from Debian's package, or download).
- ``patchenv/Digits-v1``: scikit-learn's digits, offline.
- ``patchenv/Imagenette-v1``: Imagenette resized to 64x64 with 8-px patches (N = 64, as in
  the paper's geometry); ``download=True`` fetches it.

Each id's ``vector_entry_point`` is `patchenv.population.PopulationEnv`: E training runs
stepped as one batched model (``gym.make_vec(id, num_envs=E, vectorization_mode=
"vector_entry_point")``); ``"sync"`` still gives E separate envs.

The ids are registered with ``order_enforce=False, disable_env_checker=True`` (below, and
docs/frameworks.md: a restored run steps without a reset; the env enforces the order
itself). RL frameworks beyond SB3: `patchenv.integrations` and docs/frameworks.md.
"""
from gymnasium.envs.registration import register

from patchenv.env import EnvConfig, PatchSelectionEnv

__all__ = ["EnvConfig", "PatchSelectionEnv"]
__version__ = "0.1.0"

_ENTRY = "patchenv.env:PatchSelectionEnv"
# gym.make_vec(id, num_envs=E, vectorization_mode="vector_entry_point"): E runs as one model.
_VECTOR_ENTRY = "patchenv.population:PopulationEnv"
for _id, _kwargs in (
    ("patchenv/PatchSelection-v1", {}),
    ("patchenv/CIFAR10-v1", {"dataset": "cifar10"}),
    ("patchenv/FashionMNIST-v1", {"dataset": "fashion_mnist"}),
    ("patchenv/Digits-v1", {"dataset": "digits"}),
    ("patchenv/Imagenette-v1", {"dataset": "imagenette", "patch_size": 8}),
):
    # A run restored with load_checkpoint() steps on without a reset. Gymnasium's
    # OrderEnforcing wrapper would demand one (restarting the episode count) and its
    # passive checker crashes on a first step with no reset before it, so both are off:
    # the env enforces reset-before-step itself, and the tests run the full check_env.
    register(id=_id, entry_point=_ENTRY, vector_entry_point=_VECTOR_ENTRY, kwargs=_kwargs, order_enforce=False, disable_env_checker=True)

"""Glue to RL frameworks beyond Gymnasium and Stable-Baselines3 (docs/frameworks.md).

Each module imports its framework when imported, so ``import patchenv`` needs none of
them; install them with ``pip install -e ".[integrations]"``:

- `patchenv.integrations.info`: `TypedInfo`, the info's numbers as numpy scalars (what
  readers that look at ``.dtype`` need);
- `patchenv.integrations.torchrl`: `make_env`, a TorchRL env whose ``device`` is
  patchenv's, every selection mode's action spec, the info read through TorchRL's reader;
- `patchenv.integrations.zoo`: RL Baselines3 Zoo hyperparameters (``-conf
  patchenv.integrations.zoo.ppo``, ``.a2c``, ``.dqn``).
"""

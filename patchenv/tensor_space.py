"""`TensorBox`, the observation space of ``tensor_obs=True``, under the path the README
documented before the env became a package; the class lives in `patchenv.env.spaces`."""
from patchenv.env.spaces import TensorBox

__all__ = ["TensorBox"]

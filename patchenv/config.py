"""The env's settings, `EnvConfig`, under the path the README documented before the env
became a package; the class lives in `patchenv.env.config`."""
from patchenv.env.config import EnvConfig

__all__ = ["EnvConfig"]

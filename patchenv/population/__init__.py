"""Populations: E training runs of the env stepped as one batched model, a native
Gymnasium `VectorEnv` (`env`: `PopulationEnv`, registered as every id's
``vector_entry_point``); the runs' actions joined into one token selection (`keeps`), their
one update (`training`), their next batches loaded as one (`batches`), their checkpoint
(`checkpoint`), and each run as a `gym.Env` of its own for code written for one env
(`members`: `Members`, `MemberEnv`). docs/population.md is the manual."""
from patchenv.population.env import PopulationEnv

__all__ = ["PopulationEnv"]

"""Populations: E training runs of the env stepped as one batched model, a native
Gymnasium `VectorEnv` (`env`: `PopulationEnv`); the runs' actions joined into one token
selection (`keeps`), their one update (`training`), and their checkpoint (`checkpoint`)."""
from patchenv.population.env import PopulationEnv

__all__ = ["PopulationEnv"]

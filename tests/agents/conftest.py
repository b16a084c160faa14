"""Fixtures the keeprate tests share."""
import pytest
import torch

from agents.evolve import env_kwargs, proxy_images
from patchenv.population import PopulationEnv


@pytest.fixture(scope="module")
def pop():
    """One digits proxy run of 2 epochs (400 training, 200 held-out images), built once per
    test module: the population the keeprate task trains and plays on."""
    torch.manual_seed(0)
    population = PopulationEnv(1, **env_kwargs(proxy_images("digits", 400, 200), 2, "cpu"))
    yield population
    population.close()

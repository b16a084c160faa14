"""The one contract between a patch selector (an agent) and what runs it.

The runner, the CLI and the comparison scripts use an agent only through `PatchSelector`; the
`agents` package's ``Agent`` base class gives a default for every member, so an agent
usually writes ``act`` (and ``update`` if it learns). The contract lives here, below the
agents, so ``patchenv`` never imports ``agents``.

A saved agent file names its agent and the constructor configuration that rebuilds it,
plus its state, so ``patchenv.registry.load(path)`` can rebuild it through the
constructor without being told which agent it is. Three containers are understood:

- a JSON object ``{"format", "agent", "config", "state"}`` (the default, ``.json``);
- a ``torch.save`` dict with the same keys, state as tensors (``.pt``, e.g. agentvit);
- a zip archive with a member ``patchenv_agent.json`` holding ``{"agent", "config", ...}``
  next to whatever else the agent stores (``.zip``, e.g. an SB3 model).

One optional member, read with ``getattr``: ``resume_caveat``, None (or absent) when a
run resumed from the agent's saved file continues bit for bit, else a sentence saying
why not; the runner warns with it (`patchenv.run.ResumeNotExactWarning`) on resume.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol, Union, runtime_checkable

#: the ``selection`` values an env understands: one mask per batch, one per image, or a
#: count of patches to keep (drawn at random per image)
SELECTIONS = ("batch", "image", "count")

#: name of the zip member that identifies an agent file stored as a zip archive
ZIP_HEADER = "patchenv_agent.json"


@dataclass
class Transition:
    """One env step as a training loop hands it to an agent (and to a step callback)."""

    obs: Any
    action: Any
    reward: float
    next_obs: Any
    terminated: bool
    truncated: bool
    info: dict


@runtime_checkable
class PatchSelector(Protocol):
    """Everything the runner, the CLI and the comparison scripts use of an agent (structural: an
    agent need not subclass ``agents.base.Agent``)."""

    name: str
    """the registry name; written into saved files"""
    obs_type: str
    """the observation ``act`` reads: "embeddings", "pooled", "attention" or "progress" (follows `selection`)"""
    selection: str
    """one of `SELECTIONS`: "batch" (one mask per batch), "image" (one per image) or "count"
    (how many patches every image keeps, drawn at random per image)"""
    seed: int
    """seeds everything random the agent does (initialisation, exploration, sampling)"""
    save_suffix: str
    """file name suffix of what `save` writes (".json", ".pt", ".zip")"""
    overhead_time_s: float
    """seconds of the agent's own work in `train` (acting, learning), env steps excluded"""

    def env_kwargs(self) -> dict:
        """Env constructor keywords that make the env produce what this agent consumes."""
        ...

    def setup(self, env) -> None:
        """Read the env's sizes (N, B, target count); raise ValueError if they do not fit.
        The runner calls it once per run, before the first step."""
        ...

    def act(self, obs, explore: bool = False):
        """An observation -> an action the env's action space contains (a keep-mask, or a
        count for ``selection="count"``)."""
        ...

    def train(self, env, steps: int, callback: Optional[Callable[[Transition], Any]] = None) -> dict:
        """About `steps` env steps of learning; `callback(transition)` returning False stops early."""
        ...

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Name, constructor config and state in one file (module docstring)."""
        ...

    def load(self, path: Union[str, os.PathLike]) -> "PatchSelector":
        """Become the saved agent (rebuilt through the constructor); returns self."""
        ...

    def stats(self) -> dict[str, float]:
        """Scalars worth logging every step or epoch (e.g. epsilon, replay size, last loss)."""
        ...

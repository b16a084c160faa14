"""Pluggable patch selectors: ``agents.make("agentvit")``, ``agents.load("agent.pt")``.

The registry lives in `patchenv.registry` (re-exported here for convenience). Agents are
found through the ``patchenv.agents`` entry-point group: a built-in agent is one file in
this folder plus one line in pyproject.toml's ``[project.entry-points."patchenv.agents"]``
(``pip install -e .`` again to refresh the metadata); a third-party package declares the
same group in its own metadata. An agent defined in the running process registers with
``@agents.register("name")``. The contract every agent meets is
`patchenv.selector.PatchSelector`; ``agents.base.Agent`` gives defaults for all of it.
"""
from __future__ import annotations

from patchenv.registry import available, load, make, register

__all__ = ["available", "load", "make", "register"]

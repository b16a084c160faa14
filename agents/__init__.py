"""Pluggable patch selectors: ``agents.make("agentvit")``.

Every module in this folder is imported on first use, so a new file that decorates its
class with ``@register("name")`` is all it takes to add an agent. A third-party package
registers the same way from its own module (import it before ``make``), or through the
``patchenv.agents`` entry-point group.
"""
from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points
from typing import Callable

from agents.base import Agent, PatchSelector, Transition

__all__ = ["Agent", "PatchSelector", "Transition", "available", "make", "register"]

_REGISTRY: dict[str, Callable[..., PatchSelector]] = {}
_discovered = False


def register(name: str):
    """Class (or factory) decorator: ``@register("mine") class Mine(Agent): ...``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"an agent name must be a non-empty string, got {name!r}")

    def decorator(factory):
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not factory and getattr(existing, "__qualname__", None) != getattr(
                factory, "__qualname__", None):
            raise ValueError(f"an agent named {name!r} is already registered ({existing!r})")
        _REGISTRY[name] = factory
        if isinstance(factory, type) and "name" not in factory.__dict__:
            factory.name = name
        return factory

    return decorator


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    for module in pkgutil.iter_modules(__path__):
        if module.name not in ("base",):
            importlib.import_module(f"{__name__}.{module.name}")
    for ep in entry_points(group="patchenv.agents"):
        ep.load()


def available() -> list[str]:
    """Names of every registered agent."""
    _discover()
    return sorted(_REGISTRY)


def make(name: str, **kwargs) -> PatchSelector:
    """Build a registered agent by name with its keyword arguments."""
    _discover()
    if name not in _REGISTRY:
        raise ValueError(f"unknown agent {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**kwargs)

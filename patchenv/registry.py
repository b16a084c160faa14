"""Agents by name: ``make("agentvit", frequency=6)``, ``make_from_spec("random:k=16")``,
``load("agent.pt")``.

Agents are found two ways, neither of which imports the ``agents`` package here:

- the ``patchenv.agents`` entry-point group (pyproject.toml), for the built-in agents and
  third-party packages: ``available()`` lists them without importing anything, and
  ``make(name)`` imports only the module of the agent asked for;
- ``@register("name")`` on a class or factory defined in the running process; a module or
  script that registers agents this way reaches the front ends as a plug-in:
  ``--plugin MODULE`` (or ``--plugin path/to/file.py``), or the environment variable
  ``PATCHENV_PLUGINS`` (comma-separated; worker processes inherit it), imported before any
  agent name is resolved (`import_plugins`).

A name registered in-process wins over an entry point of the same name only if both are
the same object; otherwise ``register`` refuses it.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import sys
import zipfile
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

from patchenv import safe_load
from patchenv.selector import ZIP_HEADER, PatchSelector

__all__ = ["available", "import_plugins", "load", "make", "make_from_spec", "parse_spec", "register"]

GROUP = "patchenv.agents"
PLUGINS_VAR = "PATCHENV_PLUGINS"
PLUGIN_HINT = (f"an agent of your own: --plugin MODULE_OR_FILE.py (or {PLUGINS_VAR}=MODULE) to import the module "
               f"that registers it with @register, or an entry point in the {GROUP!r} group")
SPEC_FORM = "NAME[:key=value...] (values read as JSON where they parse, else as strings)"

_REGISTRY: dict[str, Callable[..., PatchSelector]] = {}  # in-process and already-loaded entry points
_IMPORTED: set[str] = set()  # plug-ins imported so far


def import_plugins(modules: Optional[Iterable[str]] = ()) -> None:
    """Import plug-in modules (names, or paths of .py files) that register agents, and those
    named in ``$PATCHENV_PLUGINS``; each once. Names given here are added to the variable,
    so processes started from this one (sweep workers) import them too. A plug-in that
    cannot be imported is a one-line ValueError."""
    given = [m.strip() for m in modules or () if m and m.strip()]
    if given:
        os.environ[PLUGINS_VAR] = ",".join(dict.fromkeys(_named_plugins() + [
            str(Path(m).resolve()) if m.endswith(".py") else m for m in given]))
    for module in _named_plugins():
        if module not in _IMPORTED:
            _import_plugin(module)
            _IMPORTED.add(module)


def _named_plugins() -> list[str]:
    """The plug-ins ``$PATCHENV_PLUGINS`` names, in order."""
    return [m.strip() for m in os.environ.get(PLUGINS_VAR, "").split(",") if m.strip()]


def _import_plugin(module: str) -> None:
    try:
        if module.endswith(".py"):
            spec = importlib.util.spec_from_file_location(Path(module).stem, module)
            if spec is None or not Path(module).is_file():
                raise ImportError(f"no such file: {module}")
            plugin = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = plugin  # its classes pickle and print under their module's name
            spec.loader.exec_module(plugin)
        else:
            if os.getcwd() not in sys.path:  # a module beside the user, as `python -m` would find it
                sys.path.append(os.getcwd())
            importlib.import_module(module)
    except Exception as e:  # a plug-in's own error: say which plug-in
        raise ValueError(f"cannot import the agent plug-in {module!r}: {type(e).__name__}: {e}") from None


@lru_cache(maxsize=1)
def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def _target(factory) -> str:
    return f"{getattr(factory, '__module__', '?')}:{getattr(factory, '__qualname__', '?')}"


def _adopt(name: str, factory) -> None:
    """Give a class without a name of its own the registry name; refuse a class whose
    own name differs (its saved files would name another agent)."""
    if not isinstance(factory, type):
        return
    own = factory.__dict__.get("name")
    if own is None:
        factory.name = name
    elif own != name:
        raise ValueError(f"agent {name!r}: {_target(factory)} calls itself {own!r}; register it under that name")


def register(name: str):
    """Class (or factory) decorator: ``@register("mine") class Mine(Agent): ...``."""
    if not isinstance(name, str) or not name or ":" in name or "=" in name:
        raise ValueError(f"an agent name must be a non-empty string without ':' or '=', got {name!r}")

    def decorator(factory):
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not factory and _target(existing) != _target(factory):
            raise ValueError(f"an agent named {name!r} is already registered ({_target(existing)})")
        ep = _entry_points().get(name)
        if existing is None and ep is not None and ep.value != _target(factory):
            raise ValueError(f"an agent named {name!r} is already registered (entry point {ep.value})")
        _adopt(name, factory)
        _REGISTRY[name] = factory
        return factory

    return decorator


def available() -> list[str]:
    """Every agent name: entry points and in-process registrations, the plug-ins' included
    (no agent module is imported)."""
    import_plugins()
    return sorted(set(_REGISTRY) | set(_entry_points()))


def _factory(name: str):
    import_plugins()
    factory = _REGISTRY.get(name)
    if factory is not None:
        return factory
    ep = _entry_points().get(name)
    if ep is None:
        raise ValueError(f"unknown agent {name!r}; available: {', '.join(available())}; {PLUGIN_HINT}")
    try:
        factory = ep.load()
    except ImportError as e:
        raise ImportError(f"agent {name!r} ({ep.value}) cannot be imported: {e}") from e
    _adopt(name, factory)
    _REGISTRY[name] = factory
    return factory


def make(name: str, **kwargs) -> PatchSelector:
    """Build the agent registered as `name` with its constructor's keyword arguments.
    An unknown name or a bad argument raises ValueError (naming the agent)."""
    factory = _factory(name)
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as e:
        raise ValueError(f"agent {name!r}: {e}") from None
    except ValueError:  # no signature to inspect (a builtin): let the call decide
        pass
    try:
        return factory(**kwargs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"agent {name!r}: {e}") from e


def parse_spec(spec: str) -> tuple[str, dict]:
    """``"random:k=16"`` -> ``("random", {"k": 16})``: a name, then ``key=value`` pairs
    separated by ':', each value read as JSON where it parses, else kept as a string."""
    if not isinstance(spec, str):
        raise ValueError(f"agent spec must be a string of the form {SPEC_FORM}, got {spec!r}")
    name, *pairs = spec.split(":")

    def bad(why: str) -> ValueError:
        return ValueError(f"agent spec {spec!r}: {why}; expected {SPEC_FORM}")

    if not name or "=" in name or name != name.strip():
        raise bad("no agent name" if not name.strip() else f"bad agent name {name!r}")
    kwargs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise bad(f"{pair!r} is not key=value")
        if not key.isidentifier():
            raise bad(f"{key!r} is not a keyword name")
        if not value:
            raise bad(f"no value for {key!r}")
        if key in kwargs:
            raise bad(f"{key!r} given twice")
        try:
            kwargs[key] = json.loads(value)
        except ValueError:
            kwargs[key] = value
    return name, kwargs


def make_from_spec(spec: str, *, seed: Optional[int] = None, **overrides) -> PatchSelector:
    """Build the agent a spec names (`parse_spec`). `seed` is passed unless the spec sets
    one; `overrides` win over the spec's keywords."""
    name, kwargs = parse_spec(spec)
    kwargs.update(overrides)
    if seed is not None:
        kwargs.setdefault("seed", seed)
    return make(name, **kwargs)


def _read_header(path: Path) -> tuple[str, dict]:
    """(agent name, constructor config) of a saved agent file, whatever its container
    (see `patchenv.selector`)."""
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not an agent file")
    if not path.is_file():
        raise FileNotFoundError(f"no agent file at {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"agent file {path} is empty")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
                if ZIP_HEADER in names:
                    header = json.loads(archive.read(ZIP_HEADER))
                else:  # torch.save writes a zip archive too: read without running code
                    header = safe_load.load(path, path)
        else:
            header = json.loads(path.read_text())
        name, config = header["agent"], header["config"]
    except Exception as e:
        raise ValueError(f"cannot read agent file {path}: {type(e).__name__}: {e}") from None
    if not isinstance(name, str) or not isinstance(config, dict):
        raise ValueError(f"cannot read agent file {path}: no agent name and config in it")
    return name, config


def load(path: Union[str, os.PathLike], trust_checkpoint: bool = False) -> PatchSelector:
    """The agent saved at `path`, rebuilt through its constructor (name and config read
    from the file), then its saved state restored: ``make(name, **config).load(path)``.
    No file is unpickled; ``trust_checkpoint=True`` also reads one an older patchenv wrote
    (a JSON agent file without its checksum, a ``ppo`` zip without its spaces): for files
    you made (docs/security.md)."""
    path = Path(path)
    name, config = _read_header(path)
    return safe_load.load_trusting(make(name, **config).load, path, trust_checkpoint)

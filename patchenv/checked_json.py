"""JSON files patchenv reads back (a run's ``progress.json`` and ``metrics.json``, a sweep's
``results.json``, an agent's saved state) carry a SHA-256 of their contents.

JSON cannot run code, but a damaged digit is still valid JSON: a resumed run would carry
on from another step count, a sweep would keep a run's wrong accuracy. The checksum turns
such damage into a one-line error (or, where a reader can rebuild what the file held,
into a rebuild). A file without one was written by an older patchenv or by hand: its
numbers cannot be checked, so it is read only when the caller trusts it.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from patchenv.atomic import PathLike, atomic_write_text, jsonable

KEY = "sha256"
UNCHECKED_HINT = ("if you wrote or edited it yourself, continue with trust_checkpoint=True "
                  "(--trust-checkpoint on the command line)")


def digest(obj: dict) -> str:
    """The checksum of `obj` (a JSON object without its own checksum): the SHA-256 of its
    canonical JSON, which a parse of the file gives back exactly."""
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def dumps(obj: dict) -> str:
    """`obj` (through `jsonable`) as indented JSON, its checksum last."""
    plain = jsonable(obj)
    if not isinstance(plain, dict) or KEY in plain:
        raise TypeError(f"a checked JSON file holds an object without a {KEY!r} key")
    return json.dumps({**plain, KEY: digest(plain)}, indent=2, allow_nan=False) + "\n"


def write(path: PathLike, obj: dict) -> None:
    """Write `obj` with its checksum, atomically (`patchenv.atomic`)."""
    atomic_write_text(path, dumps(obj))


def read(path: PathLike, *, trust: bool = False) -> dict:
    """The object in the file at `path`, its checksum checked and removed. Raises a
    one-line ValueError naming the file when it cannot be read, is not a JSON object,
    does not match its checksum, or has none (unless `trust`)."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is damaged: it is not UTF-8 text") from None
    return loads(text, path, trust=trust)


def loads(text: str, name: Any, *, trust: bool = False) -> dict:
    """`read` for the text of a file (`name` names it in errors)."""
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{name} is damaged: not JSON ({e})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{name} is damaged: it should hold a JSON object, not {type(obj).__name__}")
    saved = obj.pop(KEY, None)
    if saved is None:
        if trust:
            return obj
        raise ValueError(f"{name} has no checksum (an older patchenv's file, or written by hand), so its numbers "
                         f"cannot be checked; {UNCHECKED_HINT}")
    try:
        ours = digest(obj)
    except ValueError:  # NaN or infinity: never written by `dumps`
        ours = None
    if saved != ours:
        raise ValueError(f"{name} is damaged or was edited: its contents do not match their checksum")
    return obj

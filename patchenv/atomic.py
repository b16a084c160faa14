"""Atomic file writes: a temp file in the same folder, then a rename.

A crash, a full disk or a Ctrl-C while writing leaves the previous file intact and no
half-written one: results and checkpoints are either the old or the new version.

A write the OS refuses (no space left, permission denied, a read-only folder, a file too
large) raises `WriteError`, which names the file meant (never the temp file) and the OS's
reason on one line; the front ends print it and exit with status 1."""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Union

PathLike = Union[str, os.PathLike]


class WriteError(OSError):
    """A file (or folder) that could not be written: ``path`` and the OSError ``cause``,
    said on one line. An OSError with the cause's errno, so a caller that gets by without
    the file (a cache) still catches it as one."""

    def __init__(self, path: PathLike, cause: OSError):
        super().__init__(cause.errno, cause.strerror)
        self.path, self.cause = Path(os.fsdecode(path)), cause  # TensorBoard names its files in bytes

    def __reduce__(self):  # pickled as itself (a Ray trial's error travels so)
        return type(self), (str(self.path), self.cause)

    def __str__(self) -> str:
        cause = self.cause
        reason = f"[Errno {cause.errno}] {cause.strerror}" if cause.errno is not None else str(cause)
        return f"cannot write {self.path}: {reason}"


@contextlib.contextmanager
def writing(path: PathLike) -> Iterator[None]:
    """Inside the block, an OSError is a `WriteError` naming `path` (one that already
    names its file is kept)."""
    try:
        yield
    except WriteError:
        raise
    except OSError as e:
        raise WriteError(path, e) from e


def atomic_write(path: PathLike, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` and move the result onto `path` in one rename; an OSError
    on the way is a `WriteError` naming `path`, the temp file removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with writing(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            write(tmp)
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):  # the write's own error is the one to report
            tmp.unlink(missing_ok=True)


def atomic_write_text(path: PathLike, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_torch_save(obj, path: PathLike) -> None:
    import torch  # here, so the module stays importable without torch

    # Serialised in memory, written by Python: a full disk is then an OSError with its
    # reason. torch.save writing a file itself turns it into a RuntimeError without one.
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()))


def jsonable(obj: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays to Python, non-finite floats to None
    (JSON has no NaN), paths to strings."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy arrays and scalars
        return jsonable(obj.tolist())
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def atomic_write_json(path: PathLike, obj: Any) -> None:
    """`obj` as indented JSON (through `jsonable`), atomically."""
    atomic_write_text(path, json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n")

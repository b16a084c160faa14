"""A run's output folder: one writer at a time (its lock), and starting over in it."""
from __future__ import annotations

import contextlib
import fcntl
import shutil
from pathlib import Path
from typing import Iterable, Iterator

from patchenv.atomic import WriteError, writing
from patchenv.run.errors import RunError


@contextlib.contextmanager
def locked(out) -> Iterator[None]:
    """Hold an exclusive lock on the output folder `out` (its ``.lock`` file) while a run
    writes it: a second writer given the same folder, in this process or another, gets a
    RunError instead of overwriting the first one's files. A folder this call created is
    removed again when the block wrote nothing into it (a run refused at its start leaves
    no trace)."""
    out = Path(out)
    created = not out.exists()
    try:
        with writing(out / ".lock"):  # a read-only place, a full disk: a WriteError naming the lock
            out.mkdir(parents=True, exist_ok=True)
            handle = open(out / ".lock", "a")
    except WriteError:
        if created:  # a run that could not start leaves no trace
            shutil.rmtree(out, ignore_errors=True)
        raise
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise RunError(f"{out} is being written by another process (its .lock is held); wait for it or use "
                       f"another --out") from None
    try:
        yield
    finally:
        if created and [p.name for p in out.iterdir()] == [".lock"]:
            shutil.rmtree(out, ignore_errors=True)
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def clear_out(out: Path, names: Iterable[str]) -> None:
    """Start over in `out`: remove the named results of an earlier run (files or folders).
    Called only once the new settings are known to be valid."""
    for name in names:
        path = Path(out) / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()

"""A disk that refuses one write, for the tests of what a failed write leaves behind.

`DiskFull(monkeypatch, name, nth, how)` makes the `nth` write to a file (or folder) named
`name` fail with ``OSError(err)`` (ENOSPC by default), the way the OS reports it:

- ``"replace"``: a file written whole (temp file + rename, `patchenv.atomic`) fails at its
  rename onto `name`: the temp file is complete and must be removed, the old file kept;
- ``"append"``: a file written piece by piece (the CSV logs, TensorBoard's event files)
  fails at its `nth` ``write`` call, counted over every ``open`` of it;
- ``"open"``: the `nth` opening of the file for writing fails (a lock file);
- ``"mkdir"``: a folder fails to be made.

At the failure it records the path it refused (``path``) and the bytes of every file under
``root`` (``before``), so a test can check that nothing written before changed.
"""
from __future__ import annotations

import builtins
import errno
import io
import json
import os
from pathlib import Path
from typing import Optional

TEMP = ".tmp-"  # patchenv.atomic's temp files hold this in their names


def files(root: Path) -> dict:
    """Every file under `root`: its path, its bytes."""
    return {p: p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


class DiskFull:
    def __init__(self, monkeypatch, name: str, nth: int, how: str, root: Path, err: int = errno.ENOSPC):
        self.name, self.nth, self.root, self.err = name, nth, Path(root), err
        self.count = 0
        self.path: Optional[Path] = None
        self.before: dict = {}
        if how == "replace":
            replace = os.replace

            def faulty_replace(src, dst, *args, **kwargs):
                if self.matches(dst):
                    self.maybe_fail(dst)
                return replace(src, dst, *args, **kwargs)

            monkeypatch.setattr(os, "replace", faulty_replace)
        elif how in ("append", "open"):
            real_open = builtins.open

            def faulty_open(file, mode="r", *args, **kwargs):
                writes = (isinstance(file, (str, bytes, os.PathLike)) and self.matches(os.fsdecode(file))
                          and ("a" in mode or "w" in mode))
                if writes and how == "open":
                    self.maybe_fail(file)
                handle = real_open(file, mode, *args, **kwargs)
                return FailingFile(handle, lambda: self.maybe_fail(file)) if writes else handle

            monkeypatch.setattr(builtins, "open", faulty_open)
            monkeypatch.setattr(io, "open", faulty_open)  # TensorBoard's file layer opens through io
        elif how == "mkdir":
            mkdir = os.mkdir

            def faulty_mkdir(path, *args, **kwargs):
                if self.matches(path):
                    self.maybe_fail(path)
                return mkdir(path, *args, **kwargs)

            monkeypatch.setattr(os, "mkdir", faulty_mkdir)
        else:
            raise ValueError(f"how: replace, append, open or mkdir, not {how!r}")

    def matches(self, path) -> bool:
        return Path(path).name == self.name or (self.name.endswith("*") and Path(path).name.startswith(self.name[:-1]))

    def maybe_fail(self, path) -> None:
        self.count += 1
        if self.count == self.nth:
            self.path = Path(os.fsdecode(path))
            self.before = files(self.root) if self.root.exists() else {}
            raise OSError(self.err, os.strerror(self.err), os.fsdecode(path))

    @property
    def reason(self) -> str:
        """What the one-line error says of the cause, as the OS words it."""
        return f"[Errno {self.err}] {os.strerror(self.err)}"


class FailingFile:
    """An open file whose ``write`` first asks `check` (which may raise)."""

    def __init__(self, handle, check):
        self.handle, self.check = handle, check

    def write(self, data):
        self.check()
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


def one_line(err: str) -> str:
    """The only line on stderr (no traceback, no second line)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def committed(root: Path) -> set:
    """The checkpoint folders the progress.json files under `root` name."""
    return {p.parent / json.loads(p.read_text())["checkpoint"] for p in Path(root).rglob("progress.json")}


def intact(root: Path, before: dict) -> None:
    """What was on disk when the write failed is still there byte for byte (the logs,
    which a resume truncates to its checkpoint, and the empty lock file aside), nothing was added, no temp file is
    left, and every checkpoint folder left is one a progress.json names, whole."""
    root = Path(root)
    after = files(root) if root.exists() else {}
    good = committed(root)

    def kept(files_: dict) -> dict:
        return {p: b for p, b in files_.items() if TEMP not in p.name and p.name != ".lock"
                and "logs" not in p.relative_to(root).parts
                and (p.parent.parent.name != "checkpoints" or p.parent in good)}

    assert not [p for p in after if TEMP in p.name]
    assert kept(after) == kept(before)
    assert {f for d in root.rglob("checkpoints") for f in d.iterdir()} == good
    for folder in good:
        assert {"env.pt", "rng.pt"} <= {p.name for p in folder.iterdir()}

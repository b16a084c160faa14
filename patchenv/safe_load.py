"""Reading the files patchenv writes without running code from them.

A ``torch.save`` file is a pickle, and a pickle can name any Python callable for the
loader to call: a crafted ``.pt`` file handed to a loader that unpickles freely runs what
its author chose. Every checkpoint patchenv writes holds only tensors and plain values
(str, int, float, bool, None, bytes, and dicts, lists and tuples of them), so it is read
with ``torch.load(weights_only=True)``, whose unpickler builds those and refuses
everything else. `check_plain` keeps the writing side to that promise.

Files written by older versions of patchenv (checkpoint format v1 and before) were read
with the free unpickler; they are refused unless the caller says the file is theirs
(``trust_checkpoint=True``, ``--trust-checkpoint``): `TRUST_HINT` tells how.
"""
from __future__ import annotations

import io
import os
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Union

import torch

TRUST_HINT = ("if you wrote this file yourself, continue it with trust_checkpoint=True "
              "(patchenv train --resume --trust-checkpoint), which unpickles it and so can run code it holds")

_PLAIN = (str, int, float, bool, bytes, type(None))


def load(source: Union[str, os.PathLike, bytes], name, *, map_location="cpu", trust: bool = False) -> Any:
    """The object in the ``torch.save`` file (or bytes) `source`, read without running code
    (unless `trust`). Anything but tensors and plain values, and any damage, is a one-line
    ValueError naming `name`."""
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    else:
        try:
            source = io.BytesIO(Path(source).read_bytes())  # one read: the checks and the load see the same bytes
        except OSError as e:
            raise ValueError(f"cannot read {name}: {e.strerror or first_line(e)}") from None
    # torch.save has written zip archives since torch 1.6; anything else is not ours (and
    # the weights-only unpickler's complaint about it would read like a crafted file's).
    if not zipfile.is_zipfile(source):
        raise ValueError(f"cannot read {name}: not a torch.save file")
    # torch's reader does not check the members' CRC-32s: a flipped bit in a tensor would
    # load as another number. Python's zipfile does.
    try:
        with zipfile.ZipFile(source) as archive:
            damaged = archive.testzip()
    except Exception as e:
        raise ValueError(f"cannot read {name}: {type(e).__name__}: {first_line(e)}") from None
    if damaged is not None:
        raise ValueError(f"{name} is damaged: its member {damaged} does not match its checksum")
    source.seek(0)
    try:
        with warnings.catch_warnings():  # a damaged file's pickle protocol warning is not the user's news
            warnings.simplefilter("ignore")
            return torch.load(source, map_location=map_location, weights_only=not trust)
    except Exception as e:
        message = str(e)
        if message.startswith("Weights only load failed"):
            # torch's paragraph ends with its unpickler's own reason: keep that one line.
            found = re.search(r"WeightsUnpickler error: ([^\n]*)", message)
            reason = found.group(1).strip() if found else first_line(e)
            raise ValueError(f"{name} was not loaded: it holds more than tensors and plain values "
                             f"({reason.rstrip('.')}), and unpickling it could run code; {TRUST_HINT}") from None
        raise ValueError(f"cannot read {name}: {type(e).__name__}: {first_line(e)}") from None


def older_format(path, fmt: str) -> ValueError:
    """The refusal of a file in format `fmt`, which an older patchenv read by unpickling:
    one line that says how to continue it."""
    return ValueError(f"{path} is a {fmt} checkpoint, from a patchenv that read checkpoints by unpickling them; "
                      f"{TRUST_HINT}")


def load_trusting(load: Callable[..., Any], path, trust: bool) -> Any:
    """``load(path)``, given ``trust_checkpoint=True`` only when `trust`: an env's or an
    agent's ``load`` of the user's own (a plug-in, a RunnableEnv) need not take the flag."""
    return load(path, trust_checkpoint=True) if trust else load(path)


def first_line(e: BaseException) -> str:
    """The first non-empty line of an exception's message (torch's are often paragraphs)."""
    for line in str(e).splitlines():
        if line.strip():
            return line.strip()
    return type(e).__name__


def check_plain(obj: Any, where: str = "state") -> None:
    """Raise TypeError unless `obj` is tensors and plain values only: what a file written
    with it can be read back as without the free unpickler (`load`)."""
    if isinstance(obj, torch.Tensor) or isinstance(obj, _PLAIN):
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where} has a key of type {type(k).__name__}; checkpoints hold str or int keys")
            check_plain(v, f"{where}[{k!r}]")
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(f"{where} is a {type(obj).__module__}.{type(obj).__name__}; checkpoints hold tensors and "
                    f"plain values only")

"""A measurement that fails is recorded and the report goes on: on a lent GPU there is
one try, and a failed torch.compile must not cost the other sections."""
from __future__ import annotations

import gc
import traceback
from typing import Any, Callable

import torch


def error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:2000]


def attempt(record: dict, fn: Callable[[], Any]) -> bool:
    """Run `fn`; on an exception store its text (and traceback tail) in `record`, free
    device memory and return False so the caller goes on with the next measurement."""
    try:
        fn()
        return True
    except Exception as e:  # a failed variant must not end the report
        record["error"] = error_text(e)
        record["traceback"] = traceback.format_exc().splitlines()[-12:]
        release_memory()
        return False


def release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

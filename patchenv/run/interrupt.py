"""Two-stage Ctrl-C for long runs (``patchenv train``, ``compare_selectors``).

The first Ctrl-C only sets ``requested``: the run stops after the current step and saves
a checkpoint. The second raises KeyboardInterrupt at once (the last complete checkpoint
stays valid). Outside the main thread the handler cannot be installed, and Ctrl-C is
left to whoever owns it."""
from __future__ import annotations

import signal
import sys
import threading
from typing import Optional

from tqdm import tqdm


class GracefulInterrupt:
    """Context manager installing the SIGINT handler. ``after_steps`` simulates a Ctrl-C
    once ``count_step`` has been called that many times (tests)."""

    def __init__(self, after_steps: Optional[int] = None):
        self.requested = False
        self.after_steps = after_steps
        self.steps = 0
        self._previous = None

    def __enter__(self) -> "GracefulInterrupt":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        tqdm.write("Ctrl-C: stopping after this step and saving a checkpoint (Ctrl-C again to stop at once)",
                   file=sys.stderr)

    def count_step(self) -> None:
        self.steps += 1
        if self.after_steps is not None and self.steps >= self.after_steps:
            self.requested = True

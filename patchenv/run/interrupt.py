"""Two-stage Ctrl-C for long runs (``patchenv train``, ``compare_selectors``), and SIGTERM
the same way: cluster schedulers stop jobs with it (Slurm's preemption and time limit,
Kubernetes' eviction), so a job they stop keeps a checkpoint to resume from.

The first signal only sets ``requested``: the run stops after the current step and saves
a checkpoint. The second raises KeyboardInterrupt at once (the last complete checkpoint
stays valid). The front ends exit with ``exit_status``, 128 + the signal's number (130
for Ctrl-C, 143 for SIGTERM), as a shell reports a process the signal killed. Outside the
main thread the handlers cannot be installed, and the signals are left to whoever owns
them."""
from __future__ import annotations

import signal
import sys
import threading
from typing import Optional

from tqdm import tqdm


SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulInterrupt:
    """Context manager installing the SIGINT and SIGTERM handlers. ``after_steps`` simulates
    a Ctrl-C once ``count_step`` has been called that many times (tests)."""

    def __init__(self, after_steps: Optional[int] = None):
        self.requested = False
        self.signal: Optional[signal.Signals] = None  # the signal that asked to stop (None: simulated)
        self.after_steps = after_steps
        self.steps = 0
        self._previous: dict = {}

    @property
    def exit_status(self) -> int:
        """128 + the stopping signal's number: 130 (Ctrl-C, and a simulated stop), 143 (SIGTERM)."""
        return 128 + int(self.signal or signal.SIGINT)

    def __enter__(self) -> "GracefulInterrupt":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.signal = signal.Signals(signum)
        name = "Ctrl-C" if signum == signal.SIGINT else self.signal.name
        tqdm.write(f"{name}: stopping after this step and saving a checkpoint ({name} again to stop at once)",
                   file=sys.stderr)

    def count_step(self) -> None:
        self.steps += 1
        if self.after_steps is not None and self.steps >= self.after_steps:
            self.requested = True

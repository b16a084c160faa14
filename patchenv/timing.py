"""DeviceTimer: the one clock for work that may be queued on a device.

On CUDA it reads the device's own clock (a pair of CUDA events), after waiting for the
end event, so the time covers the queued work and not only its launch; elsewhere it is
``time.perf_counter``. The env's step, the population's step, the runner's epochs and the
benchmarks all time with it.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Optional, Union

import torch


class DeviceTimer:
    """Seconds of work on `device`: ``start()`` ... ``stop()``, or ``timer(fn, inner)`` for
    the seconds per call of `fn` over `inner` back-to-back calls.

    ``sync_start``: wait for the device's earlier work before starting, so it is not
    counted (benchmarks; note: a sync, outside the timed work). An env step leaves it off:
    the step before ended with a wait, and the step must not add one."""

    def __init__(self, device: Union[str, torch.device], *, sync_start: bool = True):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.sync_start = sync_start
        self._start: Optional[Any] = None
        self._host_start = 0.0

    def start(self) -> None:
        self._host_start = time.perf_counter()
        if self.cuda:
            if self.sync_start:
                torch.cuda.synchronize(self.device)  # note: sync (outside the timed work)
            self._start = torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._start = time.perf_counter()

    def elapsed(self) -> float:
        """Host seconds since `start`, read without waiting for the device (an estimate
        while work is queued; `stop` gives the time)."""
        return time.perf_counter() - self._host_start

    def stop(self) -> float:
        """Seconds since `start`, the device's work queued in between included."""
        if self._start is None:
            raise RuntimeError("DeviceTimer.stop() without start()")
        start, self._start = self._start, None
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            end.synchronize()  # note: sync, so the time covers the queued work
            return start.elapsed_time(end) / 1e3
        return time.perf_counter() - start

    def __call__(self, fn: Callable[[], Any], inner: int = 1) -> float:
        self.start()
        for _ in range(inner):
            fn()
        return self.stop() / inner

"""DeviceTimer: the one clock for work that may be queued on a device.

On CUDA it reads the device's own clock (a pair of CUDA events), after waiting for the
end event, so the time covers the queued work and not only its launch; elsewhere it is
``time.perf_counter``. The env's step, the population's step, the runner's epochs and the
benchmarks all time with it. A step must not wait for its own clock: it ends with `lap`, a
`Lap` whose seconds are read later, and sums them in a `SecondsSum`, which waits for the
device only when its total is read.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Optional, Union

import torch


class DeviceTimer:
    """Seconds of work on `device`: ``start()`` ... ``stop()``, or ``timer(fn, inner)`` for
    the seconds per call of `fn` over `inner` back-to-back calls.

    ``sync_start``: wait for the device's earlier work before starting, so it is not
    counted (benchmarks; note: a sync, outside the timed work). An env step leaves it off
    and ends with `lap`: a step must not add a wait."""

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
        """Seconds since `start`, the device's work queued in between included (note: on
        CUDA a sync, so the time covers the queued work)."""
        return self.lap().seconds()

    def lap(self) -> "Lap":
        """The span since `start`, ended without waiting for the device: its `Lap`."""
        if self._start is None:
            raise RuntimeError("DeviceTimer.stop() without start()")
        start, self._start = self._start, None
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            return Lap(start, end)
        return Lap(seconds=time.perf_counter() - start)

    def __call__(self, fn: Callable[[], Any], inner: int = 1) -> float:
        self.start()
        for _ in range(inner):
            fn()
        return self.stop() / inner


class Lap:
    """One timed span: seconds already (host clock), or a pair of CUDA events turned into
    seconds when asked, waiting for the end event then (note: a sync, when asked)."""

    def __init__(self, start: Any = None, end: Any = None, seconds: Optional[float] = None):
        self._events = (start, end)
        self._seconds = seconds

    def finished(self) -> bool:
        """Whether `seconds` would not wait."""
        return self._seconds is not None or self._events[1].query()

    def seconds(self) -> float:
        if self._seconds is None:
            start, end = self._events
            end.synchronize()
            self._seconds = start.elapsed_time(end) / 1e3
        return self._seconds


class SecondsSum:
    """A running sum of `Lap`s (a run's training time), added in order without waiting;
    reading ``total`` or ``last`` waits for the laps not finished yet. Finished laps are
    folded in as they are added, so a long run keeps few events."""

    _KEPT = 64  # laps kept unread before the finished ones are folded in

    def __init__(self, total: float = 0.0):
        self._total = float(total)
        self._pending: list[Lap] = []
        self._last: Optional[Lap] = None

    def add(self, lap: Lap) -> None:
        self._pending.append(lap)
        self._last = lap
        if len(self._pending) > self._KEPT:
            done = 0
            while done < len(self._pending) and self._pending[done].finished():
                done += 1
            self._fold(done)

    @property
    def total(self) -> float:
        self._fold(len(self._pending))
        return self._total

    @property
    def last(self) -> float:
        """The last lap's seconds (0 before any)."""
        return 0.0 if self._last is None else self._last.seconds()

    def _fold(self, count: int) -> None:
        for lap in self._pending[:count]:  # in order: the sum of the laps one by one
            self._total += lap.seconds()
        del self._pending[:count]

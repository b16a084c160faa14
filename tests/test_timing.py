"""DeviceTimer, the one clock of steps, epochs and benchmarks (on the CPU here)."""
import time

import pytest

from patchenv.timing import DeviceTimer


def test_the_timer_measures_the_work_between_start_and_stop():
    timer = DeviceTimer("cpu")
    timer.start()
    time.sleep(0.05)
    assert timer.elapsed() >= 0.05
    seconds = timer.stop()
    assert 0.05 <= seconds < 1.0


def test_a_call_is_the_mean_over_inner_calls():
    calls = []
    seconds = DeviceTimer("cpu", sync_start=False)(lambda: (calls.append(1), time.sleep(0.02)), inner=3)
    assert len(calls) == 3 and 0.02 <= seconds < 0.5


def test_stop_without_start_is_a_clear_error():
    with pytest.raises(RuntimeError, match="without start"):
        DeviceTimer("cpu").stop()

"""DeviceTimer, the one clock of steps, epochs and benchmarks (on the CPU here)."""
import time

import pytest

from patchenv.timing import DeviceTimer, Lap, SecondsSum


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


def test_a_seconds_sum_adds_laps_in_order_and_reads_the_last():
    laps = [0.1, 0.2, 0.3] * 30  # more than it keeps unread: the finished ones are folded in
    total = SecondsSum(1.5)
    assert total.last == 0.0
    for s in laps:
        total.add(Lap(seconds=s))
    want = 1.5
    for s in laps:
        want += s
    assert total.total == want and total.last == 0.3

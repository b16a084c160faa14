"""The report's sections, in the order they run (cheap and telling first, compiling last)."""
from __future__ import annotations

from typing import Callable

from benchmarks.device.agent_share import section_agentvit
from benchmarks.device.context import Context
from benchmarks.device.env_overhead import section_env_overhead
from benchmarks.device.epoch import section_epoch
from benchmarks.device.gpu_tests import section_gpu_tests
from benchmarks.device.profiling import section_profile
from benchmarks.device.step_time import section_step_time, section_step_time_graph

SECTIONS: list[tuple[str, Callable[[Context, dict], None]]] = [
    ("gpu_tests", section_gpu_tests),
    ("step_time", lambda ctx, rec: section_step_time(ctx, rec, mode="eager")),
    ("step_time_graph", section_step_time_graph),
    ("env_overhead", section_env_overhead),
    ("profile", section_profile),
    ("agentvit", section_agentvit),
    ("epoch", section_epoch),
    ("step_time_compiled", lambda ctx, rec: section_step_time(ctx, rec, mode="compile")),
]

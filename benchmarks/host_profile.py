"""Where a population step's time goes on the host: Python bookkeeping against torch ops.

    python -m benchmarks.host_profile --num-envs 1,2,4,8,16,32,64 --preset tiny --out results/host_profile
    python -m benchmarks.population --host-profile ...   # the same rows, beside the speed-up table

For each E, one `PopulationEnv` (synthetic data, ``selection="batch"``, ``obs_type="pooled"``,
every other patch kept, episodes longer than the run) takes ``--warmup`` steps, then
``--steps`` steps timed plainly (``wall_ms``) and ``--steps`` more under
`torch.profiler`, ``--repeats`` times (medians reported). A profiled step splits into:

- ``torch_ms``: the time of torch's top-level operators (each counted once with the ops
  it calls; autograd's backward included), which on a GPU become kernel launches and,
  where they wait, the device's work;
- ``python_ms``: the rest of the profiled step, the Python the env runs around them
  (parsing actions, the runs' bookkeeping, the info), which no device makes faster and
  which bounds a GPU population's speed-up at large E.

The profiler adds a few microseconds per operator, so the profiled step is longer than
``wall_ms``; compare ``python_ms`` between E's and between versions of the code measured
the same way. One torch thread by default.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path

import numpy as np
import torch

from patchenv.atomic import atomic_write_text
from patchenv.population import PopulationEnv
from patchenv.timing import DeviceTimer


def _top_level_ms(prof: torch.profiler.profile) -> float:
    """Milliseconds in the profile's top-level operators (each with the ops it called)."""
    return sum(e.cpu_time_total for e in prof.events() if e.cpu_parent is None) / 1e3


def profile_population(num_envs: int, preset: str, steps: int, warmup: int, repeats: int, device: str = "cpu",
                       dataset="synthetic") -> dict:
    """Per-step milliseconds of E runs as one population (module docstring). On CUDA the
    operators' host time is their launch (and any wait for the device)."""
    pop = PopulationEnv(num_envs, preset=preset, dataset=dataset, device=device, selection="batch",
                        obs_type="pooled", episode_steps=10**6)
    pop.reset(seed=0)
    n = pop.single_action_space.shape[0]
    actions = np.zeros((num_envs, n), dtype=np.int8)
    actions[:, ::2] = 1
    for _ in range(warmup):
        pop.step(actions)
    walls, torch_ms, python_ms = [], [], []
    timer = DeviceTimer(device)
    for _ in range(repeats):
        walls.append(timer(lambda: pop.step(actions), steps) * 1e3)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            profiled = timer(lambda: pop.step(actions), steps) * 1e3 * steps
        in_torch = _top_level_ms(prof)
        torch_ms.append(in_torch / steps)
        python_ms.append((profiled - in_torch) / steps)
    pop.close()
    return {"num_envs": num_envs, "preset": preset, "wall_ms": statistics.median(walls),
            "torch_ms": statistics.median(torch_ms), "python_ms": statistics.median(python_ms),
            "python_ms_per_run": statistics.median(python_ms) / num_envs}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-envs", default="1,2,4,8,16,32,64", help="comma list of E (default: 1,2,4,8,16,32,64)")
    p.add_argument("--preset", default="tiny", help="ViT preset (default: tiny)")
    p.add_argument("--steps", type=int, default=10, help="steps per measurement (default: 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    p.add_argument("--repeats", type=int, default=3, help="measurements per E, the median reported (default: 3)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default: 1)")
    p.add_argument("--out", default=None, help="folder for host_profile.json (default: print only)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    print(f"{'E':>4} {'wall ms':>9} {'torch ms':>9} {'python ms':>10} {'python ms/run':>14}")
    for e in (int(x) for x in args.num_envs.split(",")):
        row = profile_population(e, args.preset, args.steps, args.warmup, args.repeats)
        rows.append(row)
        print(f"{e:>4} {row['wall_ms']:>9.2f} {row['torch_ms']:>9.2f} {row['python_ms']:>10.2f} "
              f"{row['python_ms_per_run']:>14.3f}", flush=True)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"threads": args.threads, "cpu": platform.processor() or platform.machine(),
                "cores": os.cpu_count(), "torch": torch.__version__, "steps": args.steps, "repeats": args.repeats}
        atomic_write_text(out / "host_profile.json", json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

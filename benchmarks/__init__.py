"""Benchmarks: measurements of patchenv, each a ``python -m benchmarks.<script>`` command.

- `compare_selectors`: patch selectors compared on the same data, seeds and budget
  (accuracy against training time and FLOPs), locally or as Ray Tune trials, with grids
  and named suites (`suites`: ``--suite fmnist``); its machinery lives in `benchmarks.sweep`.
- `device_report`: one command that checks and times patchenv on a device (the CUDA tests,
  step times, env overhead, AgentViT's share, an epoch, compiled steps) against targets;
  its sections live in `benchmarks.device`.
- `throughput`: training-step time against patches kept, the bare step beside the env.
- `trial_memory`: what one compare_selectors run (one Ray trial) costs in memory, per preset.

Shared by them: `bare_step` (the bare training step the env's step is compared with) and
`common` (list parsing, CSV and figure files, timing, confidence intervals, Markdown
tables). Every script writes JSON with a ``meta`` block (`patchenv.run.meta`: hardware,
library versions, configuration, date) and prints a Markdown table.
"""

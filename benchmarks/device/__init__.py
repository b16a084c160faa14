"""The pieces of ``python -m benchmarks.device_report`` (the command line is
`benchmarks.device_report`), one concern a module:

- `config`: what a report measures (`ReportConfig`, full or ``--quick``);
- `context`: the run's `Context` and the env and inputs the sections build on it;
- `timing`: the device clock, paired ratios, repeats that fit a budget;
- `attempts`: a failed measurement is recorded and the report goes on; `dynamo`: compile bookkeeping;
- one module per section: `gpu_tests`, `step_time`, `env_overhead`, `profiling`, `agent_share`,
  `epoch`; `sections` lists them in the order they run;
- `targets`: PASS/FAIL read off the sections; `markdown`: the report as Markdown;
  `report`: the meta block and the two files.
"""

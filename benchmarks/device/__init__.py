"""The pieces of ``python -m benchmarks.device_report`` (the command line, and the list of
sections in the order they run, is `benchmarks.device_report`), named by what they measure:

- `gpu_tests`: the CUDA tests (``pytest -m gpu``), their counts and failures;
- `step_time`: the training step's time: the bare step against the patches kept, env.step
  against the bare step, and where a step's time goes (torch.profiler);
- `training_loop`: the loop's time: AgentViT's share of it, and a CIFAR-10-sized epoch
  with its data pipeline's share;
- `report`: the targets read off the sections, the Markdown, the meta block and the files;
- `harness`: what every section runs in: the configuration (full or ``--quick``), the
  run's context and env, repeats that fit a budget, a failed measurement recorded while the
  report goes on, and torch.compile's bookkeeping.
"""

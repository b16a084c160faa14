"""The machinery behind ``python -m benchmarks.compare_selectors``, one concern a module,
each importing only the ones below it:

- `plan`: the sweep's configuration from the flags, its grid points, run folders and budgets;
- `grid`: ``--grid KEY=V1,V2`` parsed and checked as each key's own flag would check it;
- `local`: one run through the runner (`run_one`, which both backends call) and the two
  local schedules, sequential and interleaved;
- `ray_backend`: the same runs as Ray Tune trials (``--backend ray``);
- `results`: the rows, ``results.json``/``results.csv`` and reading them back for ``--resume``;
- `stats`: speed-ups, targets and paired differences against ``all``, and the printed table;
- `plots`: the figures.
"""

"""Compare patch selectors on the same data, seeds and budget: accuracy against training time.

    python -m benchmarks.compare_selectors --dataset digits --preset small --epochs 20 --seeds 0,1 \
        --selectors all,random,agentvit:frequency=6:eps_decay=450,norm_topk --device cpu --out results/digits  # make run

A thin front end over the one runner (`patchenv.run`): every (selector, seed) is one run
of ``run_training`` in its own folder ``OUT/runs/<selector>-seed<seed>/`` (its
``metrics.json``, and its checkpoint while it runs), and this script merges them.

For every seed, ``all`` (every patch, the plain ViT) runs first: it is the reference that
speed-up, accuracy change and the default target accuracy are measured against, on the
same seed. Then each selector gets a fresh env seeded the same way (``reset(seed=s)``: same
ViT initialisation, same data order), built with the selector's own ``env_kwargs()``, and
the agent gets the same seed.

What is measured, and how:
- training time: wall clock of ``agent.train`` epoch by epoch (the env's steps *and* the
  agent's own acting and learning, since both are what a user pays for), the device
  synchronised before the clock is read; evaluation and checkpointing are outside it.
  ``env_step_time_s`` is the env's share, ``agent_overhead_s`` the agent's.
- accuracy: with all patches after every epoch on the validation split (``--protocol
  val``, the default; the test split once at the end) or on the test split (``--protocol
  paper``, the notebook's protocol), and at the end also with the selector's own masks (``test_accuracy_masked``) and with
  random masks drawn as AgentViT explores (``test_accuracy_random_masks``: a uniform
  vector cut at its mean, ~N/2 kept, a fresh draw per batch, seeded by the run's seed),
  the notebook's three columns; `all` gets only the first.
- ``--budget equal-epochs`` (default): every selector trains ``--epochs`` epochs.
  ``--budget equal-time``: each selector trains until its training time reaches the
  ``all`` run's on the same seed, so "does it save time?" is answered at equal cost.
  ``--budget equal-flops``: each selector trains until it has spent the training FLOPs
  the ``all`` run spent on the same seed (the last epoch cut there; up to 20x the epochs),
  so a selector that keeps few patches is judged at ``all``'s compute, not its epochs.
- ``time_to_target_s`` (and ``tokens_to_target``, ``flops_to_target``): training cost at
  the first evaluation whose accuracy (validation under ``--protocol val``) reached the
  target (``--target-accuracy``, by default the ``all`` run's final accuracy, same seed).
- ``--suite fmnist``: the standard offline comparison (`benchmarks.suites`).

Writes ``OUT/results.json`` ({"meta", "runs"}; each run holds its per-epoch ``curve``
with the runner's field names), ``OUT/results.csv`` (one row per run, the scalar fields)
``OUT/accuracy_vs_time.png``, ``accuracy_vs_flops.png`` and ``patch_keep_frequency.png``;
prints a Markdown table (mean and 95% confidence interval over seeds, paired differences
against ``all``).
Results are written after every finished run. An OUT that holds results needs
``--resume`` (skips finished runs, continues the interrupted one from its checkpoint) or
``--overwrite`` (starts over). Ctrl-C stops after the current step and checkpoints; a
second Ctrl-C stops at once (the last epoch's checkpoint stays).

Grids: ``--grid alpha=0.3,0.7 --grid preset=tiny,small`` crosses env settings (the preset
or any env flag) with the selectors and seeds. Every grid point is its own comparison,
with its own ``all`` reference, run folders ``OUT/runs/<setting>/<selector>-seed<seed>/``
(setting ``alpha=0.3,preset=tiny``), rows carrying ``setting`` and a column per key, and
its own block of the printed table.

Backends: ``--backend local`` (default) runs here, one run at a time; ``--backend ray``
makes every (setting, selector, seed) run one Ray Tune trial, ``--cpus-per-run`` CPUs and
``--gpus-per-run`` GPUs each (`benchmarks.sweep.ray_backend`), on a private local Ray or, with
``--ray-address``, a cluster. Both call the same ``run_one`` and merge into the same files;
a run's torch thread count is ``--cpus-per-run`` under both, so on a CPU they give the
same numbers.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Optional

import torch
from tqdm import tqdm

import patchenv  # noqa: F401  (registers the env ids)
from benchmarks.suites import SUITES
from benchmarks.sweep import plan
from benchmarks.sweep.grid import grid_actions, grid_text
from benchmarks.sweep.local import RunOptions, check_selector, reference_flops, run_interleaved, run_sequential
from benchmarks.sweep.population_schedule import run_population
from benchmarks.sweep.results import OUTPUTS, Results, fill_eval_split, load_previous
from benchmarks.sweep.rl_stats import rl_statistics, rl_table
from benchmarks.sweep.stats import curve_key, summary_table
from patchenv import data as data_mod
from patchenv import registry
from patchenv.atomic import WriteError, atomic_write_text
from patchenv.checks import one_line, out_of_memory_as
from patchenv.run.interrupt import GracefulInterrupt
from patchenv.run.meta import meta_block
from patchenv.cli.options import add_run_arguments, check_out
from patchenv.run import Budget, RunError, clear_out, locked


class SettingsTooLarge(Exception):
    """Settings too large for the machine's memory (`patchenv.checks.out_of_memory_as`)."""


# -- the command line -----------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.compare_selectors", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--selectors", default="all,random,norm_topk", metavar="NAME[:key=value...],...",
                   help="comma list of agent specs (`patchenv agents` lists the names), e.g. random:k=32; "
                        "`all` is added first if missing (default: all,random,norm_topk)")
    p.add_argument("--seeds", "--seed", dest="seeds", default="0", help="comma list of seeds (default: 0)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (the `all` run's under equal-time; default: 3)")
    p.add_argument("--budget", default="equal-epochs", choices=plan.BUDGETS,
                   help="equal-epochs (default): --epochs each; equal-time / equal-flops: each selector trains until "
                        "it has spent the all run's training time / FLOPs on the same seed")
    p.add_argument("--schedule", default=None, choices=("interleaved", "sequential", "population"),
                   help="--backend local: interleaved (default): every run advances one epoch per turn in a shuffled "
                        "round-robin, so load drift falls on every selector alike (a run's numbers do not change); "
                        "sequential: one run after another; population: a selector's seeds as one batched "
                        "population (= --population). (--backend ray runs trials side by side: 'parallel')")
    p.add_argument("--population", dest="schedule", action="store_const", const="population",
                   help="run each selector's seeds (at each grid point) as one population, E runs of one batched ViT "
                        "(patchenv.population), each with its own agent; a run's time is the population's wall clock")
    p.add_argument("--target-accuracy", type=float, default=None,
                   help="accuracy (fraction, on the per-epoch split: validation under --protocol val) for "
                        "time_to_target_s; default: the `all` run's final, same seed")
    p.add_argument("--stop-at-target", action="store_true",
                   help="every run, `all` included, stops once an evaluation reaches --target-accuracy (checked "
                        f"{Budget.checks_per_epoch} times an epoch once within a point of it, outside the clock): "
                        "its cost so far is its cost to target. Under equal-flops the budget is then `all`'s FLOPs "
                        "for --epochs epochs, computed, so every run starts at once (interleaved from the start)")
    p.add_argument("--horizon-epochs", type=float, default=None,
                   help="the run length schedules plan for (the env's budget_epochs: `grow`, `evolved`, `keeprate` "
                        "read their progress against it); default: --epochs")
    add_run_arguments(p, out_default="results/compare")
    p.add_argument("--suite", choices=sorted(SUITES), default=None,
                   help="a named standard comparison (benchmarks/suites.py): its settings become the defaults, "
                        "flags given still win; fmnist: " + " ".join(f"{k}={v}" for k, v in SUITES["fmnist"].items()))
    p.add_argument("--grid", action="extend", nargs="+", default=[], metavar="KEY=V1,V2",
                   help="cross env settings with the selectors and seeds, e.g. --grid alpha=0.3,0.7 preset=tiny,small "
                        "(repeatable); KEY is preset or any env flag's name (alpha, n_patch_desired, dataset, "
                        "val_fraction, lr, batch_size, ...) and overrides that flag; every grid point has its own "
                        "`all` reference")
    scale = p.add_argument_group("scale-out")
    scale.add_argument("--backend", default="local", choices=plan.BACKENDS,
                       help="local (default): the runs one at a time in this process; ray: every (setting, selector, "
                            "seed) run is a Ray Tune trial (pip install -e \".[ray]\")")
    scale.add_argument("--cpus-per-run", type=float, default=1.0, metavar="N",
                       help="CPUs a run uses: its torch thread count (the integer part, at least 1) under either "
                            "backend, so both give the same numbers on a CPU, and the CPUs Ray reserves per trial "
                            "(default: 1)")
    scale.add_argument("--gpus-per-run", type=float, default=None, metavar="G",
                       help="--backend ray: GPUs per trial; a fraction shares a GPU between trials, e.g. 0.25 runs four "
                            "small ViTs on one GPU (default: 0; --device cuda needs more)")
    scale.add_argument("--ray-address", default=None, metavar="ADDRESS",
                       help="--backend ray: the cluster to use, 'auto' (the one this node belongs to) or "
                            "ray://HOST:PORT; default: start a private local Ray for this sweep, never an existing one")
    scale.add_argument("--ray-num-cpus", type=int, default=None, metavar="N",
                       help="--backend ray without --ray-address: CPUs of the private local Ray (default: all cores)")
    scale.add_argument("--max-failures", type=int, default=None, metavar="N",
                       help="--backend ray: retries of a trial whose worker died, each from the run's last "
                            "checkpoint (default: 3)")
    p.add_argument("--stop-after-steps", type=int, default=None, help=argparse.SUPPRESS)  # tests: a simulated Ctrl-C
    # tests: a Ray trial's worker dies (os._exit) once, after the run's first checkpoint; the file marks it done
    p.add_argument("--die-once-after-checkpoint", default=None, metavar="MARKER", help=argparse.SUPPRESS)
    return p


def parse_args(parser: argparse.ArgumentParser, argv: Optional[list[str]]) -> argparse.Namespace:
    """Parse twice when a --suite is named: once to find it, then with its settings as defaults."""
    args = parser.parse_args(argv)
    if args.suite is not None:
        parser.set_defaults(**SUITES[args.suite])
        args = parser.parse_args(argv)
    return args



def make_config(args) -> dict:
    """The sweep's configuration from the parsed flags (`benchmarks.sweep.plan.make_config`)."""
    return plan.make_config(args, grid_actions(build_parser()))


# -- orchestration ----------------------------------------------------------------------------
def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    if args.backend == "ray":
        from benchmarks.sweep import ray_backend

        ray_backend.prepare_environment(private=args.ray_address is None)
        if not ray_backend.available():
            parser.error('--backend ray needs Ray: pip install -e ".[ray]"')
    out = Path(args.out)
    try:
        registry.import_plugins(args.plugin)  # agents of the user's own, before any name is resolved
        check_out(out, "results.json", args.resume, args.overwrite)
        cfg = make_config(args)
        points = plan.grid_points(cfg, args)
        runs = load_previous(out, cfg, args.trust_checkpoint) if args.resume else []
    except ValueError as e:
        parser.error(one_line(e))
    fill_eval_split(runs, cfg, points)
    try:
        with out_of_memory_as(SettingsTooLarge):
            images = plan.load_images(points)
            check_selectors(cfg, points, images)
            if plan.computed_reference(cfg):  # the budget every run gets, known before any starts
                for point in points:
                    point["reference_flops"] = reference_flops(plan.checkable(point), images[plan.images_key(point)])
    except data_mod.DatasetError as e:  # missing or corrupt data: the message says what to do
        print(f"{parser.prog}: error: {one_line(e)}", file=sys.stderr)
        return 1
    except ValueError as e:
        parser.error(one_line(e))
    except SettingsTooLarge as e:
        parser.error(str(e))
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg["threads"])  # the runs' thread count (a Ray trial sets its own the same way)
    try:
        with out_of_memory_as(SettingsTooLarge):  # the ViTs are built inside the runs
            with locked(out):  # a second process on the same --out is refused before it deletes or writes
                return sweep(args, argv, cfg, out, runs, points, images)
    except RunError as e:
        parser.error(one_line(e))
    except SettingsTooLarge as e:
        parser.error(str(e))
    except WriteError as e:  # a full disk, a read-only folder: what was written before stays
        again = "the same command plus --resume" if (out / "results.json").is_file() else "the same command"
        print(f"{parser.prog}: error: {one_line(e)} (once it can be written, continue with {again})", file=sys.stderr)
        return 1
    finally:
        torch.set_num_threads(threads)


def target_text(cfg: dict, split: str) -> str:
    """What the target accuracy of the report is, in words."""
    if cfg["target_accuracy"] is None:
        return f"all's final {split} accuracy"
    stop = ", every run stopped on reaching it" if cfg.get("stop_at_target") else ""
    return f"{100 * cfg['target_accuracy']:.2f}% {split} accuracy (--target-accuracy){stop}"


def check_selectors(cfg: dict, points: list[dict], images: dict) -> None:
    """Each agent against its env at every point (e.g. random:k above N), before any run."""
    for point in points:
        where = "" if point.get("setting") is None else f" at {point['setting']}"
        for spec in cfg["selectors"]:
            try:
                check_selector(plan.checkable(point), images[plan.images_key(point)], spec)
            except ValueError as e:
                raise ValueError(f"selector {spec!r}{where}: {e}") from None


def sweep(args, argv, cfg: dict, out: Path, runs: list[dict], points: list[dict], images: dict) -> int:
    """Every (setting, seed, selector) run not finished yet, merged into OUT: here,
    interleaved (one epoch per turn, turns in a shuffled round-robin) or one run after
    another, or as Ray Tune trials side by side."""
    options = RunOptions.from_args(args)
    with contextlib.ExitStack() as stack:
        cluster = None
        if cfg["backend"] == "ray":  # before anything is written: a Ray that cannot start changes nothing
            from benchmarks.sweep import ray_backend

            cluster = stack.enter_context(ray_backend.connected(cfg, args.ray_num_cpus))
        if args.overwrite:  # the new settings are valid: only now are the old results removed
            clear_out(out, OUTPUTS)
        planned = plan.planned_runs(points, cfg)
        todo = [t for t in planned if not plan.finished(runs, t[0].get("setting"), t[1], t[2])]
        if args.resume and len(todo) < len(planned):
            print(f"resume: {len(planned) - len(todo)} finished run(s) kept from {out / 'results.json'}",
                  file=sys.stderr)

        # The meta block describes this process's view: a Ray cluster's head may have no GPU.
        meta = meta_block(cfg["device"] if torch.device(cfg["device"]).type == "cpu" or torch.cuda.is_available()
                          else "cpu", cfg)
        meta["device"] = cfg["device"]
        meta["argv"] = list(sys.argv[1:] if argv is None else argv)
        if cluster is not None:
            meta["ray"] = cluster.describe()
        results = Results(out, cfg, meta, runs)
        results.write("running")  # the folder now says it holds a sweep
        start = time.perf_counter()
        phases = plan.phases(todo, cfg)
        stop = stack.enter_context(GracefulInterrupt(args.stop_after_steps))
        results.bar = tqdm(total=len(todo), desc="runs", unit="run", disable=args.no_progress, position=0)
        stack.callback(results.bar.close)
        for phase in phases:
            if cluster is not None:
                try:
                    interrupted = cluster.run(phase, results, options, stop, args.die_once_after_checkpoint)
                    if interrupted is None and stop.requested and phase is not phases[-1]:
                        # Ctrl-C between the phases (Tune's own handler covers a phase)
                        interrupted = next(t for t in todo
                                           if not plan.finished(runs, t[0].get("setting"), t[1], t[2]))
                except ray_backend.TrialsFailed as e:
                    results.write("interrupted")
                    print(f"\n{e}\n{len(runs)} finished run(s) saved in {out / 'results.json'}; the failed runs "
                          f"keep their last checkpoint under {out / 'runs'}. Fix the cause, then rerun the same "
                          f"command plus --resume.", file=sys.stderr)
                    return 1
            else:
                schedule = {"interleaved": run_interleaved, "sequential": run_sequential,
                            "population": run_population}[cfg["schedule"]]
                interrupted = schedule(phase, images, options, stop, results, args.resume)
            if interrupted is not None:
                point, seed, selector = interrupted
                folder = plan.run_dir(out, selector, seed, point.get("setting"))
                where = {} if point.get("setting") is None else {"setting": point["setting"]}
                results.write("interrupted", {"selector": selector, "seed": seed, **where, "folder": str(folder)})
                print(f"\ninterrupted: {len(runs)} finished run(s) saved in {out / 'results.json'}; runs in "
                      f"progress are checkpointed under {out / 'runs'}. Continue with the same command plus "
                      f"--resume.", file=sys.stderr)
                return stop.exit_status  # 130 after Ctrl-C, 143 after SIGTERM
    # Rows in the plan's order, whatever order the runs finished in (Ray's trials, a resumed
    # sweep's kept runs, the interleaved turns).
    rank = {(p.get("setting"), seed, s): i for i, (p, seed, s) in enumerate(planned)}
    runs.sort(key=lambda r: rank.get((r.get("setting"), r["seed"], r["selector"]), len(rank)))
    results.write("complete")
    report(cfg, points, meta, runs, out, time.perf_counter() - start, ray=cluster is not None)
    return 0


def report(cfg: dict, points: list[dict], meta: dict, runs: list[dict], out: Path, elapsed: Optional[float],
           ray: bool) -> None:
    """The finished sweep, printed: what ran where, the summary table, the files. `elapsed`
    None: the rows were merged from sweeps run side by side (`benchmarks.merge_sweeps`),
    whose own wall times their folders keep."""
    epochs = f"{cfg['epochs']} epoch" + ("s" if cfg["epochs"] != 1 else "")
    what = (f"{cfg['dataset']}: preset {cfg['preset']}" if not cfg.get("grid")
            else f"grid {grid_text(cfg['grid'])} (base: {cfg['dataset']}, preset {cfg['preset']})")
    print(f"\n## {what}, {epochs}, budget {cfg['budget']}, "
          f"seeds {','.join(map(str, cfg['seeds']))}, device {cfg['device']} ({meta['cpu']}"
          + (f", {meta['gpu']}" if meta["gpu"] else "") + f", {meta['torch_threads']} torch threads)\n")
    settings = [p.get("setting") for p in points]
    print(summary_table(runs, cfg["selectors"], settings, compact=True))
    backend = "" if not ray else f"; backend ray ({meta['ray']['address']})"
    note = (f"mean ± 95% confidence interval over seeds (Student's t; with fewer than 3 seeds: mean (min to max)); "
            f"Δ, ratios and speed-ups paired by seed against all, '*' where the interval excludes 0 (Δ) or 1 "
            f"(ratios; speed-ups over the seeds that reached the target); test accuracy on the test split; the "
            f"target is {target_text(cfg, curve_key(runs).split('_')[0])}; schedule {cfg['schedule']}{backend}; "
            f"training time excludes evaluation. "
            + (f"Wall time {elapsed:.0f} s." if elapsed is not None else
               f"Merged from {len(meta.get('merged_from', []))} sweeps run side by side: "
               f"{', '.join(meta.get('merged_from', []))}."))
    print(f"\n{note}")
    rl = rl_statistics(runs, cfg["selectors"])
    rl_note = ("IQM: interquartile mean over runs; intervals: 95% stratified bootstrap (per grid point); P(X > Y) "
               "over pairs of runs, ties half (Agarwal et al. 2021, rliable's definitions; benchmarks/sweep/rl_stats.py); "
               "P(fewer FLOPs to target than grow): share of seeds, paired, a run that never reached it counting as "
               "infinite FLOPs.")
    atomic_write_text(out / "results.md", f"# {what}\n\n{summary_table(runs, cfg['selectors'], settings)}\n\n{note}\n"
                                          f"\n## RL statistics\n\n{rl_table(rl)}\n\n{rl_note}\n")
    print("full table: " + str(out / "results.md"))
    print("results: " + ", ".join(str(out / name) for name in OUTPUTS if (out / name).is_file()))


if __name__ == "__main__":
    raise SystemExit(main())

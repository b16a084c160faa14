"""``compare_selectors --backend ray``: every (setting, selector, seed) run is one Ray Tune
trial, so a sweep spreads over the cores of one machine or the nodes of a cluster. With
``--population`` a trial is one (setting, selector) with all its seeds as one population
(`benchmarks.sweep.population_schedule`): a GPU per trial then trains E runs at once.

    python -m benchmarks.compare_selectors --backend ray --cpus-per-run 1 ...          # a private local Ray
    python -m benchmarks.compare_selectors --backend ray --ray-address auto ...        # this node's cluster
    python -m benchmarks.compare_selectors --backend ray --gpus-per-run 0.25 --device cuda ...  # 4 runs a GPU

No second runner: a trial calls `benchmarks.sweep.local.run_one` (hence `patchenv.run.run_training`)
on the run's folder ``OUT/runs/...``, with ``resume=True``: a trial whose worker died
(killed, out of memory, a lost node) is started again by Tune (``--max-failures`` times)
and continues from the run's last epoch checkpoint, not from scratch. The finished run's
metrics come back to this process through ``tune.report``, which merges them into
``results.json``/``results.csv``/plots as the local backend does, after every trial.

Each trial sets torch to ``int(--cpus-per-run)`` threads, as the local backend does for
its runs, so on a CPU both backends give the same numbers for the same seeds.

Where things live: without ``--ray-address`` a private Ray is started for this sweep and
stopped after it (``ray.init(address="local")``: an existing cluster, or ``RAY_ADDRESS``,
is never joined silently); Ray's session files go where Ray puts them (``/tmp/ray``, or
``RAY_TMPDIR``), Tune's trial records to ``OUT/ray/``. The workers import this checkout's
``patchenv``, ``agents`` and ``benchmarks``, shipped as Ray ``py_modules``, so every node runs
the driver's code; the other dependencies (torch, gymnasium, ...) and the data sets must be
installed on every node, and on a cluster ``--out`` must be a folder every node sees (the
run folders and their checkpoints are how a retried trial resumes on another node).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import sys
import time
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Optional

import torch

from benchmarks.sweep.local import RunOptions, run_one
from benchmarks.sweep.plan import (REFERENCE, budget_for, images_key, population_groups, run_config, run_dir,
                                   safe_name)
from benchmarks.sweep.population_schedule import run_population_of
from benchmarks.sweep.results import Results
from patchenv import checked_json, data as data_mod
from patchenv.atomic import jsonable
from patchenv.run.interrupt import GracefulInterrupt
from patchenv.run.meta import git_commit
from patchenv.run import Budget, RunError, has_checkpoint, read_progress

# No usage report; Tune's automatic per-trial loggers off (the CSV and TensorBoard ones
# would copy every result, the runs' curves included: a JSON record per trial is kept);
# Tune's classic console output, which verbose=0 silences (the newer one prints a banner
# per experiment whatever the verbosity): the sweep prints its own progress and table;
# Ctrl-C is the sweep's (it stops the trials through a Stopper and says how to resume,
# where Tune's handler would point to Tuner.restore).
_DRIVER_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
               "RAY_AIR_NEW_OUTPUT": "0", "TUNE_DISABLE_SIGINT_HANDLER": "1"}
_AUTH_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


class TrialsFailed(RuntimeError):
    """Trials failed more often than --max-failures allows (one line per failed run)."""


def prepare_environment(private: bool = True) -> None:
    """Settings Ray reads from the environment when it is imported, so call this first:
    no usage report, no automatic Tune loggers, and for a private local Ray (`private`)
    token authentication with a token of this process's own (Ray would otherwise write one
    to ~/.ray/auth_token, shared by every later cluster, and warn about it). Settings the
    user made are kept; once Ray is imported nothing is changed (the process's Ray and the
    cluster it starts must agree on the token)."""
    if "ray" in sys.modules:
        return
    for key, value in _DRIVER_ENV.items():
        os.environ.setdefault(key, value)
    if private and not any(k in os.environ for k in _AUTH_ENV):
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


def available() -> bool:
    """Whether Ray Tune can be imported (``pip install -e ".[ray]"``)."""
    try:
        import ray.tune  # noqa: F401
    except ImportError:
        return False
    return True


def init(address: Optional[str] = None, num_cpus: Optional[int] = None, temp_dir: Optional[str] = None) -> None:
    """Start a private local Ray (`address` None; `num_cpus` CPUs, default all; session files
    under `temp_dir`, default Ray's) or connect to the cluster at `address` ("auto",
    "ray://host:port"); quiet (no dashboard, no usage report, workers' output not
    forwarded), with this checkout's packages shipped to the workers."""
    prepare_environment(private=address is None)
    import ray

    import agents
    import benchmarks
    import patchenv

    # py_modules: the workers import the driver's code, whatever checkout or install the
    # nodes have (an editable install elsewhere included); the git commit goes with it, for
    # the runs' meta blocks (the shipped copy is no git checkout).
    env_vars = {"RAY_USAGE_STATS_ENABLED": "0"}
    commit = git_commit()
    if commit:
        env_vars["PATCHENV_GIT_COMMIT"] = commit
    runtime_env = {"py_modules": [str(Path(m.__file__).parent) for m in (patchenv, agents, benchmarks)],
                   "excludes": ["__pycache__", "*.pyc"], "env_vars": env_vars}
    common = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                  runtime_env=runtime_env)
    if address is None:
        ray.init(address="local", num_cpus=num_cpus, _temp_dir=temp_dir, **common)
    else:
        ray.init(address=address, **common)


class Cluster:
    """The Ray this sweep runs on: describes it for the meta block and runs phases of trials."""

    def __init__(self, address: str):
        self.address = address
        self.retried: list[dict] = []

    def describe(self) -> dict:
        import ray

        resources = ray.cluster_resources()
        return {"address": self.address, "version": ray.__version__,
                "nodes": sum(1 for n in ray.nodes() if n.get("Alive")),
                "cpus": resources.get("CPU", 0), "gpus": resources.get("GPU", 0), "retried": self.retried}

    def run(self, phase: list, results: Results, options: RunOptions, stop: GracefulInterrupt,
            die_marker: Optional[str] = None) -> Optional[tuple]:
        """One phase of (point, seed, selector) runs as Tune trials side by side; every
        finished one is merged into OUT at once. Returns the first unfinished run when the
        sweep was interrupted (Ctrl-C: `stop`); raises TrialsFailed when trials failed for
        good."""
        import ray
        from ray import tune
        from ray.tune.logger import JsonLoggerCallback

        cfg, out = results.cfg, results.out
        # A trial runs one run, or with --population one selector's seeds as one population.
        units = population_groups(phase) if cfg["schedule"] == "population" else [[t] for t in phase]
        jobs = [job(unit, results, options, die_marker) for unit in units]
        failures = {}
        done = set()
        cluster = self

        def merge(i: int, result: dict) -> None:
            """Trial i's finished run into the results, once."""
            if i in done or "metrics" not in result:  # a trial stopped by Ctrl-C reported nothing
                return
            if failures.get(i):
                cluster.retried.append({**where(jobs[i]), "failures": failures[i],
                                        "resumed_from_step": result["resumed_from_step"]})
            results.meta["ray"] = cluster.describe()
            for (point, seed, selector), metrics in zip(units[i], json.loads(result["metrics"])):
                results.add(point, selector, seed, metrics)
            done.add(i)

        class Collect(tune.Callback):
            """Merges each finished trial's run into the results as it ends (Tune runs its
            callbacks in this process, except through Ray Client)."""

            def on_trial_recover(self, iteration, trials, trial, **info):
                failures[trial.config["index"]] = failures.get(trial.config["index"], 0) + 1

            def on_trial_complete(self, iteration, trials, trial, **info):
                merge(trial.config["index"], trial.last_result)

        class Interrupted(tune.Stopper):
            """Ctrl-C (the sweep's handler): stop every trial; each run keeps its last epoch
            checkpoint for --resume."""

            def __call__(self, trial_id, result):
                return False

            def stop_all(self):
                return stop.requested

        # Through Ray Client (ray://) Tune runs on the cluster, its callbacks and stopper
        # with it: there the results are merged once fit() returns, and Ctrl-C ends the
        # connection.
        client = ray.util.client.ray.is_connected()
        trainable = tune.with_resources(tune.with_parameters(trial, jobs=jobs),
                                        {"cpu": cfg["cpus_per_run"], "gpu": cfg["gpus_per_run"]})
        kind = "references" if all(j["selector"] == REFERENCE for j in jobs) else "runs"
        name = f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{kind}"
        tuner = tune.Tuner(
            trainable,
            param_space={"index": tune.grid_search(list(range(len(jobs))))},
            # reuse_actors: a worker process runs trial after trial (as the local backend
            # runs every run in one process), saving its start-up (seconds: torch's import)
            tune_config=tune.TuneConfig(reuse_actors=True,
                                        trial_name_creator=lambda t: trial_name(jobs[t.config["index"]]),
                                        trial_dirname_creator=lambda t: f"{t.config['index']:04d}-"
                                        + safe_name(trial_name(jobs[t.config["index"]]), "._-=,")),
            run_config=tune.RunConfig(name=name, storage_path=str(out.resolve() / "ray"), verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=cfg["max_failures"]),
                                      callbacks=[JsonLoggerCallback()] + ([] if client else [Collect()]),
                                      stop=None if client else Interrupted()))
        grid = tuner.fit()
        for result in grid:
            if result.error is None and result.metrics:
                merge(result.config["index"], result.metrics)
        missing = [i for i in range(len(jobs)) if i not in done]
        if stop.requested and missing:
            return units[missing[0]][0]
        errors = []
        for result in grid:
            i = result.config["index"]
            if result.error is not None and i not in done:
                last = (str(result.error).strip().splitlines() or [type(result.error).__name__])[-1]
                errors.append(f"{trial_name(jobs[i])}: {last}")
        if errors:
            raise TrialsFailed(f"{len(errors)} run(s) failed after {cfg['max_failures']} retries "
                               f"(Tune's records: {out / 'ray' / name}): " + "; ".join(errors))
        return units[missing[0]][0] if missing else None


@contextlib.contextmanager
def connected(cfg: dict, num_cpus: Optional[int] = None) -> Iterator[Cluster]:
    """Ray for the sweep: the one this process already started (a program or test that
    called `init` itself keeps it), else a private one of `num_cpus` CPUs or the
    ``cfg["ray_address"]`` cluster, shut down (disconnected) afterwards."""
    import ray

    if ray.is_initialized():
        yield Cluster("already connected")
        return
    address = cfg["ray_address"]
    init(address=address, num_cpus=num_cpus)
    try:
        cluster = Cluster(address or "local")
        need = {"CPU": cfg["cpus_per_run"], "GPU": cfg["gpus_per_run"]}
        have = ray.cluster_resources()
        short = [f"{need[k]:g} {k}" for k in need if need[k] > have.get(k, 0)]
        if short and address is None:  # a cluster may scale up; this machine will not
            raise RunError(f"a trial needs {' and '.join(short)} but the local Ray has "
                           f"{have.get('CPU', 0):g} CPU and {have.get('GPU', 0):g} GPU")
        yield cluster
    finally:
        ray.shutdown()


def job(unit: list[tuple], results: Results, options: RunOptions, die_marker: Optional[str]) -> dict:
    """What a trial needs to run its runs (`unit`: (point, seed, selector) of one point and
    selector; more than one: a population), JSON-able; paths absolute (a trial's working
    folder is its own)."""
    point, _, selector = unit[0]
    seeds = [seed for _, seed, _ in unit]
    env = dict(point["env"])
    if env.get("data_root") is not None:
        env["data_root"] = str(Path(env["data_root"]).resolve())
    return {"point": {**point, "env": env, "out": str(results.out.resolve())}, "selector": selector, "seeds": seeds,
            "budgets": [budget_for(point, results.runs, selector, seed, None).record() for seed in seeds],
            "threads": results.cfg["threads"],
            "checkpoint_every": options.checkpoint_every, "trust_checkpoint": options.trust_checkpoint,
            "log_dir": None if options.log_dir is None else str(Path(options.log_dir).resolve()),
            "die_marker": None if die_marker is None else str(Path(die_marker).resolve())}


def where(job: dict) -> dict:
    point, seeds = job["point"], job["seeds"]
    return {"selector": job["selector"], **({"seed": seeds[0]} if len(seeds) == 1 else {"seeds": seeds}),
            **({} if point.get("setting") is None else {"setting": point["setting"]})}


def trial_name(job: dict) -> str:
    setting, seeds = job["point"].get("setting"), job["seeds"]
    runs = f"seed{seeds[0]}" if len(seeds) == 1 else "seeds" + "+".join(map(str, seeds))
    return f"{job['selector']}-{runs}" + ("" if setting is None else f"@{setting}")


# -- inside a trial (a Ray worker) -----------------------------------------------------------
def trial(config: dict, jobs: list) -> None:
    """Tune's trainable: run ``jobs[config["index"]]`` (one run through `local.run_one`, or
    a population of a selector's seeds), resuming each run's folder's checkpoint when an
    earlier attempt left one, and report their metrics."""
    from ray import tune

    job = jobs[config["index"]]
    torch.set_num_threads(job["threads"])  # as the local backend; Ray's OMP_NUM_THREADS is not what torch uses
    point, selector = job["point"], job["selector"]
    folders = [run_dir(Path(point["out"]), selector, seed, point.get("setting")) for seed in job["seeds"]]
    trust = job.get("trust_checkpoint", False)
    resumed_from = max(read_progress(f, trust)["state"]["total"]["steps"] if has_checkpoint(f) else 0 for f in folders)
    options = RunOptions(checkpoint_every=job["checkpoint_every"], log_dir=job["log_dir"], show_progress=False,
                         trust_checkpoint=job.get("trust_checkpoint", False))
    # Outside the main thread GracefulInterrupt installs no handler: Tune ends a trial by
    # ending its worker, and the run's last epoch checkpoint stays for the next attempt.
    stop = GracefulInterrupt()
    budgets = [Budget(**b) for b in job["budgets"]]
    metrics = [finished_before(f, run_config(point, selector, seed, budget))
               for f, seed, budget in zip(folders, job["seeds"], budgets)]
    todo = [i for i, m in enumerate(metrics) if m is None]
    if len(job["seeds"]) == 1 and todo:
        on_epoch = None if job["die_marker"] is None else _die_once(Path(job["die_marker"]), folders[0])
        metrics[0] = run_one(point, _images(images_key(point)), selector, job["seeds"][0], budgets[0], options,
                             stop, resume=True, keep_checkpoint=False, on_epoch=on_epoch)
    elif todo:  # the unfinished runs of the population, as one population
        done = run_population_of(point, _images(images_key(point)), selector, [job["seeds"][i] for i in todo],
                                 [budgets[i] for i in todo], options, stop, resume=True)
        for i, m in zip(todo, done):
            metrics[i] = m
    for seed, m in zip(job["seeds"], metrics):
        if m["meta"]["status"] != "complete":
            raise RuntimeError(f"{trial_name(job)}: seed {seed} stopped before its budget "
                               f"(status {m['meta']['status']})")
    tune.report({"metrics": json.dumps(jsonable(metrics)), "resumed_from_step": resumed_from,
                 "finished_at": time.time()})


def finished_before(folder: Path, config: dict) -> Optional[dict]:
    """The run's metrics when an earlier attempt finished it (with this configuration) but
    could not report it: its worker died, or the sweep was stopped, just after."""
    path = folder / "metrics.json"
    if has_checkpoint(folder) or not path.is_file():
        return None
    try:
        metrics = checked_json.read(path)  # damaged, edited or older: the run is run again
    except ValueError:
        return None
    meta = metrics.get("meta") if isinstance(metrics.get("meta"), dict) else {}
    return metrics if meta.get("status") == "complete" and meta.get("config") == jsonable(config) else None


@lru_cache(maxsize=4)
def _images(key: tuple):
    dataset, data_root, download, image_size = key
    return data_mod.load_dataset(dataset, data_root=data_root, download=download, image_size=image_size)


def _die_once(marker: Path, folder: Path):
    """Test hook (``--die-once-after-checkpoint MARKER``): the first trial to finish an
    epoch after its run has a checkpoint kills its own worker, as an OOM kill would, and
    leaves `marker` so no later attempt or trial does it again."""
    def on_epoch(_record: dict) -> None:
        if has_checkpoint(folder) and not marker.exists():
            marker.write_text(f"{folder}\n")
            os._exit(1)

    return on_epoch

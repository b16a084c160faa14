"""python -m agents.evolve: evolve the ``evolved`` agent's policy (`agents.evolved_curve.KeepCurve`,
four numbers) with CMA-ES on proxy runs scored as the benchmark scores a selector.

The proxy runs resemble the runs the policy is judged on (the Fashion-MNIST suite): the
same data set, ViT (``tiny``) and batch size, trained until the all-patch run is near its
plateau, on images the suite never evaluates on. Of Fashion-MNIST's training split, the
suite holds out 10% for validation (`patchenv.data.splits`); the proxies draw
``--train-images`` for training and ``--eval-images`` for their own held-out accuracy from
the other 90%, so neither the suite's validation images nor its test split are ever read.
Proxy runs are seeded from 1000 up (0-999 are the benchmarks').

One generation of CMA-ES:
1. its proxy seed s (the generations cycle through ``--proxy-seeds`` of them); for each s
   an all-patch reference run was trained once (`references`): its training FLOPs F and its
   final held-out accuracy A, the target;
2. every candidate policy controls a fresh run seeded s (same initial ViT, same data order:
   common random numbers make the candidates' ranking less noisy);
3. a candidate's score is what the benchmark's "FLOPs to target" is, in units of F: the
   run is evaluated each time its FLOPs cross a twentieth of F (from ``--first-check`` on), and
   stops at the first evaluation reaching A (score: that share of F) or at F (score: 1 plus
   10 times the accuracy it lacked). Lower is better.

``--objective time`` scores the benchmark's other column, time to target, instead: a step
keeping k patches costs ``--fixed-cost`` + k (in the time of embedding and training one
patch; the reference's steps cost that with every patch), checks fall at twentieths of
the reference's cost, and a run still stops at F, the budget (a miss scores its cost share,
at least 1, plus 10 times the accuracy it lacked). Why a model and not the clock: the
candidates of a generation run one after another on a shared machine whose speed drifts by
tens of percent within minutes, which would rank them by when they ran; a count of patch
steps ranks them by what they chose. Why a fixed cost: on a CPU a small step is mostly
per-kernel work that does not shrink with the patches (``benchmarks.throughput``: a 5-patch
step costs 0.27-0.35x a full one, not 5/64), which the FLOPs objective ignores, and so it
learned to train on 5 patches for a long time.

``--population P`` scores P candidates at once as one `patchenv.population.PopulationEnv`
(a GPU's way; on a CPU 1, the default, is fastest: a population computes every run each step,
also the ones that have stopped). ``--workers W`` scores them in W processes, one torch
thread each (a CPU's way: one per core); the scores are those of one process.

The written policy is CMA-ES's mean (the best estimate under a noisy score, not the
luckiest candidate), with the recipe and every generation's scores; it is rewritten
(atomically) after every generation, so a stopped run leaves the policy so far.
``--plot`` draws the scores and the policy.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import math
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from agents.base import NO_PROBE
from agents.count_controller import Held
from agents.evolved_curve import OBJECTIVES, PACKAGED, PARAMETERS, KeepCurve, policy_record
from patchenv.atomic import atomic_write, atomic_write_json
from patchenv.data import ImageData, load_dataset
from patchenv.data.splits import hold_out_validation
from patchenv.model.flops import step_flops

PROXY_SEEDS = 1000  # proxy runs are seeded from here up; 0-999 are kept for evaluation
SUITE_VAL_FRACTION = 0.1  # the suites' validation split, never read by a proxy run
PROXY_SPLIT_SEED = 1  # draws the proxy images from the rest of the training split
CHECKS = 20  # a run is evaluated each time its FLOPs cross a twentieth of the reference's
# CMA-ES's start: a grow-like curve (a quarter of the patches early, all from mid-run), no feedback
START = KeepCurve(floor_logit=math.log(0.25 / 0.75), log_steepness=math.log(8.0), switch=0.5, feedback=0.0)
START_STDS = (1.0, 0.7, 0.25, 1.0)  # per-parameter scale of the first search distribution
# A step's cost that does not shrink with the patches, in patch-steps, for --objective time:
# with it a 5-patch step costs (24 + 5) / (24 + 64) = 0.33x a full one, between the 0.27x of
# a step alone and the 0.35x of a whole epoch measured on the project's AMD EPYC CPU machine
# (one thread, tiny ViT, batch 64; docs/results/2026-12-02-evolved-time-fmnist.md).
FIXED_COST = 24.0


def proxy_images(dataset: str, train_images: int, eval_images: int, data_root=None) -> ImageData:
    """The proxies' data: `train_images` to train on and `eval_images` to score on (as the
    "test" split), both drawn from the part of `dataset`'s training split that the suites
    train on (their validation split and test split are left out)."""
    suite_train, _ = hold_out_validation(load_dataset(dataset, data_root=data_root), SUITE_VAL_FRACTION)
    n = len(suite_train.train_y)
    if train_images + eval_images > n:
        raise ValueError(f"--train-images + --eval-images must be at most {n} (the {dataset} images the suites "
                         f"train on), got {train_images} + {eval_images}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(PROXY_SPLIT_SEED))
    train, held = perm[:train_images], perm[train_images:train_images + eval_images]
    return dataclasses.replace(suite_train, train_x=suite_train.train_x[train], train_y=suite_train.train_y[train],
                               test_x=suite_train.train_x[held], test_y=suite_train.train_y[held])


@dataclasses.dataclass(frozen=True)
class Reference:
    """What a proxy run on `seed` is scored against (`references`): its FLOPs budget, target
    held-out accuracy, and the steps whose modeled time is the ``--objective time`` unit."""

    seed: int
    flops: int
    accuracy: float
    steps: int


def env_kwargs(images: ImageData, epochs: int, device: str) -> dict:
    """The proxy runs' env: the suite's ViT and batch, keep-rate control, one probe a run."""
    from patchenv.env.presets import PRESETS

    return dict(dataset=images, **{**PRESETS["tiny"], "batch_size": 64}, device=device, val_fraction=0.05,
                selection="count", budget_epochs=epochs, probe_every=NO_PROBE)


def references(population, seeds: list[int], show_progress: bool = False, target_accuracy: Optional[float] = None,
               budget_epochs: Optional[int] = None) -> list[Reference]:
    """The all-patch reference run of each seed, trained for its whole budget: up to E seeds
    at once (run i takes seeds[i]; a population computes every run each step, so a run
    without a seed would be paid for doing nothing). Given `target_accuracy`, none is trained:
    `fixed_target_references` (`budget_epochs` counts only then)."""
    if target_accuracy is not None:
        return fixed_target_references(population, seeds, target_accuracy, budget_epochs)
    pop = population
    n, e = pop.runs[0].num_patches, pop.num_envs
    from tqdm.auto import tqdm

    refs = []
    for start in tqdm(range(0, len(seeds), e), desc="all-patch references", disable=not show_progress):
        batch = seeds[start:start + e]
        moving = np.arange(e) < len(batch)
        pop.reset(seed=batch + [batch[0]] * (e - len(batch)), options={"new_run": True})
        flops = np.zeros(e, dtype=np.int64)
        steps = 0
        while pop.runs[0].global_step < pop.runs[0].total_steps:  # the runs move in lockstep
            _, _, terminated, truncated, infos = pop.step_runs([n - 1] * e, moving)
            steps += 1
            for i in np.flatnonzero(moving):
                flops[i] += infos[i]["flops"]
                if terminated[i]:
                    raise RuntimeError(f"the all-patch reference run (seed {batch[i]}) diverged")
            if (truncated & moving).any():
                pop.reset(options={"reset_mask": truncated & moving})
        refs += [Reference(seed, int(flops[i]), float(pop.runs[i].evaluate("test")["accuracy"]), steps)
                 for i, seed in enumerate(batch)]
    return refs


def fixed_target_references(population, seeds: list[int], target_accuracy: float,
                            budget_epochs: Optional[int] = None) -> list[Reference]:
    """A proxy scored as ``fmnist-long`` scores the suite: one held-out target for every seed,
    fixed beforehand near where `all` settles; a budget of the all-patch FLOPs of `budget_epochs`
    epochs (None: the plan), computed; the time score's unit, the plan's all-patch time."""
    if not 0 < target_accuracy <= 1:
        raise ValueError(f"--target-accuracy must be a held-out accuracy in (0, 1], got {target_accuracy}")
    run = population.runs[0]
    steps = run.total_steps if budget_epochs is None else budget_epochs * run.steps_per_epoch
    if steps < run.total_steps:
        raise ValueError(f"--budget-epochs must cover the planned epochs ({run.total_steps // run.steps_per_epoch}),"
                         f" got {budget_epochs}")
    flops = int(step_flops(run.vit_config, run.batch_size, run.num_patches)["total"]) * steps
    return [Reference(seed, flops, float(target_accuracy), run.total_steps) for seed in seeds]


class TargetClock:
    """One run's account against its reference (module docstring, step 3): what it has
    spent by the objective's count, when it is next evaluated, and its score once it stops.
    `score_curves` keeps one per candidate; ``agents.keeprate_task.PopulationRuns`` one per
    run, so a learned policy's return is minus this very score."""

    DIVERGED = 2.0  # the score of a run that diverged: it never reaches the target

    def __init__(self, ref: Reference, num_patches: int, first_check: float, objective: str = "flops",
                 fixed_cost: float = FIXED_COST):
        self.ref, self.objective, self.fixed_cost = ref, objective, fixed_cost
        self.cost_unit = ref.flops if objective == "flops" else ref.steps * (fixed_cost + num_patches)
        self.flops = 0
        self.cost = 0.0  # what the objective counts: FLOPs, or patch-steps plus the fixed cost
        self.next_check = max(1, math.ceil(first_check * CHECKS))  # in twentieths of cost_unit
        self.reached = False  # its held-out accuracy reached the reference's

    def step(self, kept: int, flops: int) -> bool:
        """Count a training step that kept `kept` patches and cost `flops`; whether the run
        is to be evaluated now (its cost crossed a check, or the reference's FLOPs are spent)."""
        self.flops += flops
        self.cost += flops if self.objective == "flops" else self.fixed_cost + kept
        return self.spent or self.cost >= self.next_check * self.cost_unit / CHECKS

    @property
    def spent(self) -> bool:
        """The reference's FLOPs, the run's budget, are spent."""
        return self.flops >= self.ref.flops

    @property
    def share(self) -> float:
        """The cost so far in units of the reference's whole cost."""
        return self.cost / self.cost_unit

    def score(self, accuracy: float) -> Optional[float]:
        """After an evaluation with held-out `accuracy`: the run's score if it stops here
        (reached the target: its cost share; budget spent: the share, at least 1 under
        ``time``, plus 10 times the accuracy it lacked), else None (next check)."""
        if accuracy >= self.ref.accuracy:
            self.reached = True
            return self.share
        self.next_check += 1  # a step costs far less than a twentieth: one check per crossing
        if self.spent:
            share = 1.0 if self.objective == "flops" else max(1.0, self.share)
            return share + 10.0 * (self.ref.accuracy - accuracy)
        return None


def score_curves(population, curves: list, ref: Reference, decide_every: int, first_check: float,
                 objective: str = "flops", fixed_cost: float = FIXED_COST) -> list[float]:
    """Each curve's score on a fresh run seeded ``ref.seed`` (module docstring, step 3 and
    ``--objective``). A curve is anything with ``count(obs, num_patches)``, asked every
    `decide_every` steps."""
    pop, e = population, population.num_envs
    n = pop.runs[0].num_patches
    obs, _ = pop.reset(seed=[ref.seed] * e, options={"new_run": True})
    moving = np.arange(e) < len(curves)
    clocks = [TargetClock(ref, n, first_check, objective, fixed_cost) for _ in range(e)]
    scores = [math.nan] * len(curves)
    held = Held(decide_every)  # each run's count action, decided every decide_every steps
    while moving.any():
        counts = held.get(lambda: [curves[i].count(obs[i], n) - 1 if moving[i] else n - 1 for i in range(e)])
        obs, _, terminated, truncated, infos = pop.step_runs(counts, moving)
        held.advance()
        for i in np.flatnonzero(moving):
            check = clocks[i].step(counts[i] + 1, infos[i]["flops"])
            if terminated[i]:  # diverged: it never reaches the target
                scores[i], moving[i] = TargetClock.DIVERGED, False
            elif check:
                score = clocks[i].score(float(pop.runs[i].evaluate("test")["accuracy"]))
                if score is not None:
                    scores[i], moving[i] = score, False
        epoch_end = truncated & moving
        if epoch_end.any():  # an epoch ended; the run goes on
            obs, _ = pop.reset(options={"reset_mask": epoch_end})
    return scores


class Proxies:
    """Where the proxy runs train: one `PopulationEnv` of `population` runs in this process
    (``workers=1``), or one in each of `workers` processes started fresh ("spawn"), each
    with its own data and one torch thread. `map` runs ``fn(population_env, item)`` for each
    item there and returns the results in order. A context manager: leaving it stops the
    workers."""

    def __init__(self, workers: int, population: int, dataset: str, train_images: int, eval_images: int,
                 epochs: int, device: str, data_root=None):
        setup = (population, dataset, train_images, eval_images, epochs, device, data_root)
        self.pool = None
        if workers == 1:
            self.pop = _proxy_population(*setup)
        else:
            from concurrent.futures import ProcessPoolExecutor

            self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_start_worker, initargs=setup)

    def map(self, fn, items: list, bar=None) -> list:
        """[fn(population_env, item) for item in items], here or in the workers; `bar` (a
        tqdm) moves as results come in and is closed."""
        results = []
        with contextlib.nullcontext() if bar is None else bar:
            done = map(functools.partial(fn, self.pop), items) if self.pool is None else \
                self.pool.map(_run_in_worker, [fn] * len(items), items)
            for result in done:
                results.append(result)
                if bar is not None:
                    bar.update()
        return results

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.pool is None:
            self.pop.close()
        else:
            self.pool.shutdown(cancel_futures=True)


def _proxy_population(population, dataset, train_images, eval_images, epochs, device, data_root):
    from patchenv.population import PopulationEnv

    images = proxy_images(dataset, train_images, eval_images, data_root).to(device)
    return PopulationEnv(population, **env_kwargs(images, epochs, device))


_WORKER_POPULATION = None  # a worker process's proxy runs, built once by _start_worker


def _start_worker(*setup):
    global _WORKER_POPULATION
    torch.set_num_threads(1)
    _WORKER_POPULATION = _proxy_population(*setup)


def _run_in_worker(fn, item):
    return fn(_WORKER_POPULATION, item)


def evolve(out: Path, *, generations: int, popsize: int, proxy_seeds: int, epochs: int, train_images: int,
           eval_images: int, decide_every: int, first_check: float, seed: int, dataset: str = "fashion_mnist",
           population: int = 1, workers: int = 1, objective: str = "flops", fixed_cost: float = FIXED_COST,
           device: str = "cpu", data_root=None, show_progress: bool = True, command: Optional[str] = None) -> dict:
    """Run CMA-ES (module docstring) and write the policy to `out` atomically; returns its record."""
    import cma
    from tqdm.auto import tqdm

    if popsize % population:
        raise ValueError(f"--popsize ({popsize}) must be a multiple of --population ({population})")
    if objective not in OBJECTIVES:
        raise ValueError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if not (math.isfinite(fixed_cost) and fixed_cost >= 0):
        raise ValueError(f"--fixed-cost must be a finite number >= 0, got {fixed_cost}")
    seeds = [PROXY_SEEDS + seed + j for j in range(proxy_seeds)]
    recipe = {"command": command, "dataset": dataset, "preset": "tiny", "batch_size": 64, "epochs": epochs,
              "train_images": train_images, "eval_images": eval_images, "proxy_seeds": seeds,
              "objective": objective, **({"fixed_cost": fixed_cost} if objective == "time" else {}),
              "generations": generations, "popsize": popsize, "decide_every": decide_every,
              "first_check": first_check, "seed": seed, "population": population, "workers": workers,
              "device": device, "torch_threads": 1 if workers > 1 else torch.get_num_threads()}
    start = time.perf_counter()
    with Proxies(workers, population, dataset, train_images, eval_images, epochs, device, data_root) as proxies:
        # `population` seeds a task, trained at once (with workers, tasks side by side)
        tasks = [seeds[i:i + population] for i in range(0, len(seeds), population)]
        done = proxies.map(references, tasks, tqdm(total=len(tasks), desc="all-patch references",
                                                   disable=not show_progress))
        refs = [r for chunk in done for r in chunk]
        es = cma.CMAEvolutionStrategy(START.vector(), 1.0, {"popsize": popsize, "CMA_stds": list(START_STDS),
                                                            "seed": seed + 1, "verbose": -9})
        history = []
        for g in tqdm(range(generations), desc="generations", disable=not show_progress):
            ref = refs[g % len(refs)]
            xs = es.ask()
            curves = [KeepCurve.from_vector(x) for x in xs]
            score = functools.partial(score_curves, ref=ref, decide_every=decide_every, first_check=first_check,
                                      objective=objective, fixed_cost=fixed_cost)
            chunks = [curves[i:i + population] for i in range(0, popsize, population)]
            scores = [s for chunk in proxies.map(score, chunks) for s in chunk]
            es.tell(xs, scores)
            mean = KeepCurve.from_vector(es.result.xfavorite)
            history.append({"generation": g, "proxy_seed": ref.seed, "scores": [round(s, 4) for s in scores],
                            "best": round(min(scores), 4), "median": round(float(np.median(scores)), 4),
                            "mean_parameters": dict(zip(PARAMETERS, mean.vector())),
                            "elapsed_s": round(time.perf_counter() - start, 1)})
            # Written after every generation: a run stopped midway leaves the policy so far
            # (recipe["generations_done"] says how far it got), not nothing.
            record = policy_record(mean, recipe={**recipe, "generations_done": g + 1,
                                                 "train_time_s": round(time.perf_counter() - start, 1)},
                                   references=[dataclasses.asdict(r) for r in refs], history=history)
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(out, record)
    return record


def plot_history(record: dict, path: Path) -> None:
    """Two panels: the candidates' scores by generation (lower is better), and the evolved
    policy's keep fraction along a run (loss on a plateau, trend 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from patchenv.env.progress import PROGRESS_FEATURES

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for h in record["history"]:
        a.scatter([h["generation"]] * len(h["scores"]), h["scores"], s=8, color="tab:blue", alpha=0.5)
    a.plot([h["generation"] for h in record["history"]], [h["median"] for h in record["history"]], color="tab:blue",
           label="median")
    counted = "time (modeled)" if record["recipe"].get("objective") == "time" else "FLOPs"
    a.set(xlabel="generation", ylabel=f"{counted} to target / all's (>1: missed)", title="candidates' scores")
    a.legend()
    curve = KeepCurve.from_vector([record["parameters"][p] for p in PARAMETERS])
    done = np.linspace(0, 1.2, 121)
    obs = np.zeros((len(done), len(PROGRESS_FEATURES)))
    obs[:, PROGRESS_FEATURES.index("budget_done")] = done
    obs[:, PROGRESS_FEATURES.index("loss")] = 1.0
    b.plot(done, [curve.fraction(o) for o in obs], label="evolved (loss on a plateau)")
    b.plot(done, np.clip(0.25 + 0.75 * done / 0.75, 0, 1), "--", label="grow (16 -> 64 over 75%)")
    b.set(xlabel="share of the budget done", ylabel="share of patches kept", ylim=(0, 1.05), title="the policy")
    b.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    plt.close(fig)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agents.evolve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(PACKAGED), help=f"policy file to write (default: {PACKAGED})")
    p.add_argument("--generations", type=int, default=8, help="CMA-ES generations (default: 8)")
    p.add_argument("--popsize", type=int, default=8, help="candidate policies per generation (default: 8)")
    p.add_argument("--proxy-seeds", type=int, default=4,
                   help="proxy seeds (1000 + --seed up) the generations cycle through, one reference each (default: 4)")
    p.add_argument("--epochs", type=int, default=10, help="epochs of a proxy run's budget (default: 10)")
    p.add_argument("--train-images", type=int, default=12000, help="images a proxy run trains on (default: 12000)")
    p.add_argument("--eval-images", type=int, default=4000, help="held-out images it is scored on (default: 4000)")
    p.add_argument("--decide-every", type=int, default=20, help="env steps per decision (default: 20)")
    p.add_argument("--first-check", type=float, default=0.3,
                   help="share of the reference's FLOPs before a run's first evaluation (default: 0.3)")
    p.add_argument("--dataset", default="fashion_mnist", help="the proxies' data set (default: fashion_mnist)")
    p.add_argument("--data-root", default=None, help="where the data set is (default: patchenv's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--population", type=int, default=1,
                   help="candidates scored at once as one batched population (default: 1)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes scoring candidates side by side, one torch thread each (default: 1)")
    p.add_argument("--objective", choices=OBJECTIVES, default="flops",
                   help="what a candidate's score counts to the target: FLOPs, or time as patch-steps plus "
                        "--fixed-cost per step (default: flops)")
    p.add_argument("--fixed-cost", type=float, default=FIXED_COST,
                   help=f"a step's cost that does not shrink with the patches, in patch-steps, for --objective "
                        f"time (default: {FIXED_COST:g})")
    p.add_argument("--device", default="cpu", help="the proxy runs' device (default: cpu)")
    p.add_argument("--plot", default=None, help="also draw the scores and the policy into this PNG")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    for name in ("generations", "popsize", "proxy_seeds", "epochs", "train_images", "eval_images", "decide_every",
                 "population", "workers"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if not 0 < args.first_check <= 1:
        p.error(f"--first-check must be in (0, 1], got {args.first_check}")
    torch.set_num_threads(1)
    try:
        record = evolve(Path(args.out), generations=args.generations, popsize=args.popsize,
                        proxy_seeds=args.proxy_seeds, epochs=args.epochs, train_images=args.train_images,
                        eval_images=args.eval_images, decide_every=args.decide_every, first_check=args.first_check,
                        seed=args.seed, dataset=args.dataset, population=args.population, workers=args.workers,
                        objective=args.objective, fixed_cost=args.fixed_cost, device=args.device,
                        data_root=args.data_root, show_progress=not args.no_progress,
                        command=" ".join(["python -m agents.evolve", *(sys.argv[1:] if argv is None else argv)]))
    except ValueError as e:
        p.error(str(e))
    if args.plot:
        plot_history(record, Path(args.plot))
    print(f"evolved in {record['recipe']['train_time_s']:.0f} s; saved {args.out}: "
          + ", ".join(f"{k}={v:.3f}" for k, v in record["parameters"].items()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

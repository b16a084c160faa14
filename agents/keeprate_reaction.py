"""python -m agents.keeprate_reaction: does a time-objective keeprate policy react to the run
it controls, or does it play a schedule?

On a few held-out proxy seeds (2000 up by default: neither the benchmarks' 0-999 nor the
training's 1000 up), each with its all-patch reference (`agents.evolve.references`), on the
policy's own proxy (its header's recipe: data, images, epochs, decision interval, checks,
fixed cost, and its fixed target and budget if it was trained on one, with no reference
run), three policies each control one run per seed, scored as the policy was trained, by
the modeled time to target (`agents.evolve.score_curves`, ``--objective time``):

1. the policy itself, acting greedily, its count recorded at each decision;
2. its schedule: the mean of those counts at each decision (over the seeds that were still
   running), played as a fixed function of ``budget_done``, blind to the run;
3. ``evolved:objective=time``'s curve (`agents.evolved_curve.KeepCurve`, the packaged file);
4. with ``--constants``, a fixed count each, for scale.

If 1 beats 2, what the policy reads of the run (the loss, its trend) pays; if they tie, it
is a schedule. 3 says how far that schedule is from the one CMA-ES found. Writes
``reaction.json`` and ``reaction.png`` into ``--out``. ``--train-images`` and
``--eval-images`` run the same comparison on another proxy than the policy's (evolve's
12000 and 4000, say: does what it learned carry over?).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from agents.evolve import env_kwargs, proxy_images, references, score_curves
from agents.evolved_curve import PACKAGED_FOR
from agents.evolved_curve import read_policy as read_curve
from agents.keeprate import packaged_policy
from agents.keeprate_file import PolicyHeader
from agents.keeprate_time import ConstantCount
from patchenv.atomic import atomic_write, atomic_write_json
from patchenv.env.progress import PROGRESS_FEATURES

_BUDGET = PROGRESS_FEATURES.index("budget_done")
EVAL_SEEDS = (2000, 2001, 2002)


class Schedule:
    """A fixed count per decision, played by ``budget_done`` (the decision it falls on),
    holding the last one past its end: a schedule, blind to the run."""

    def __init__(self, counts: list[int], decide_every: int, total_steps: int):
        self.counts, self.decide_every, self.total_steps = counts, decide_every, total_steps

    def count(self, obs, num_patches: int) -> int:
        decision = round(float(obs[_BUDGET]) * self.total_steps / self.decide_every)
        return self.counts[min(decision, len(self.counts) - 1)]


class Recorded:
    """A curve whose every answer is recorded as (budget_done, count)."""

    def __init__(self, curve):
        self.curve, self.trace = curve, []

    def count(self, obs, num_patches: int) -> int:
        k = self.curve.count(obs, num_patches)
        self.trace.append((round(float(obs[_BUDGET]), 4), int(k)))
        return k


def mean_schedule(traces: list[list[tuple]]) -> list[int]:
    """The mean count at each decision over the traces that reach it, rounded."""
    longest = max(len(t) for t in traces)
    return [int(round(np.mean([t[j][1] for t in traces if len(t) > j]))) for j in range(longest)]


def react(policy: Path, seeds: list[int], out: Path, constants: tuple = (), train_images: Optional[int] = None,
          eval_images: Optional[int] = None, show_progress: bool = True) -> dict:
    """Run the comparison (module docstring); write and return its record."""
    from tqdm.auto import tqdm

    from patchenv.population import PopulationEnv

    header = PolicyHeader.read(policy)
    recipe = header.recipe
    if recipe.get("objective") != "time":
        raise ValueError(f"{policy} was trained for objective {recipe.get('objective')!r}; this compares "
                         f"time-objective policies")
    policy = header.greedy()  # a keeprate policy is a curve `score_curves` can play: it has count()
    evolved, _ = read_curve(PACKAGED_FOR["time"])
    start = time.perf_counter()
    train_images, eval_images = train_images or recipe["train_images"], eval_images or recipe["eval_images"]
    images = proxy_images(recipe["dataset"], train_images, eval_images)
    pop = PopulationEnv(1, **env_kwargs(images, recipe["epochs"], "cpu"))
    # the policy's proxy: a reference run per seed, or its fixed target and budget
    refs = references(pop, seeds, show_progress, recipe.get("target_accuracy"), recipe.get("budget_epochs"))
    total_steps = pop.runs[0].total_steps
    score = dict(decide_every=recipe["decide_every"], first_check=recipe["first_check"], objective="time",
                 fixed_cost=recipe["fixed_cost"])
    rows: dict[str, list] = {"policy": [], "schedule": [], "evolved": [], **{f"constant {k}": [] for k in constants}}
    bar = tqdm(total=len(rows) * len(refs), desc="reaction runs", disable=not show_progress)
    with bar:
        for ref in refs:  # the policy first: its mean is the schedule
            played = Recorded(policy)
            [s] = score_curves(pop, [played], ref, **score)
            rows["policy"].append({"seed": ref.seed, "score": s, "trace": played.trace})
            bar.update()
        schedule = mean_schedule([row["trace"] for row in rows["policy"]])
        others = [("schedule", Schedule(schedule, recipe["decide_every"], total_steps)), ("evolved", evolved),
                  *((f"constant {k}", ConstantCount(k)) for k in constants)]
        for name, curve in others:
            for ref in refs:
                played = Recorded(curve)
                [s] = score_curves(pop, [played], ref, **score)
                rows[name].append({"seed": ref.seed, "score": s, "trace": played.trace})
                bar.update()
    pop.close()
    record = {"policy_file": str(policy), "seeds": seeds, "train_images": train_images, "eval_images": eval_images, "references": [r.__dict__ for r in refs],
              "score": "modeled time to target / the reference's (a miss: at least 1 plus 10x the accuracy lacked)",
              "schedule": schedule,
              "mean_score": {name: float(np.mean([r["score"] for r in rs])) for name, rs in rows.items()},
              "runs": rows, "time_s": round(time.perf_counter() - start, 1),
              "torch_threads": torch.get_num_threads()}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "reaction.json", record)
    plot_reaction(record, out / "reaction.png")
    return record


def plot_reaction(record: dict, path: Path) -> None:
    """Count against budget_done: the policy's runs (one line a seed), its mean schedule,
    and the evolved curve's runs; the scores in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"policy": dict(color="tab:blue", alpha=0.6), "schedule": dict(color="black", lw=2),
              "evolved": dict(color="tab:orange", ls="--")}
    for name, rows in record["runs"].items():
        if name not in styles:  # the constants: in the JSON, not drawn
            continue
        for j, row in enumerate(rows):
            if name == "schedule" and j:
                continue  # the same counts on every seed (to where each run stopped)
            x, k = zip(*row["trace"])
            label = f"{name} (mean score {record['mean_score'][name]:.3f})" if j == 0 else None
            ax.step(x, k, where="post", label=label, **styles[name])
    ax.set(xlabel="budget_done (share of the reference's planned steps)", ylabel="patches kept",
           title="keeprate:objective=time on held-out proxy seeds")
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    plt.close(fig)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agents.keeprate_reaction", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", default=str(packaged_policy("time")),
                   help=f"a time-objective keeprate policy (default: {packaged_policy('time')})")
    p.add_argument("--seeds", default=",".join(map(str, EVAL_SEEDS)),
                   help="held-out proxy seeds, comma-separated, each >= 2000 (default: 2000,2001,2002)")
    p.add_argument("--out", required=True, help="folder for reaction.json and reaction.png")
    p.add_argument("--constants", default="", help="fixed counts to score as well, comma-separated (default: none)")
    p.add_argument("--train-images", type=int, default=None, help="another proxy's training images (default: the recipe's)")
    p.add_argument("--eval-images", type=int, default=None, help="another proxy's held-out images (default: the recipe's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        p.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    try:
        constants = tuple(int(k) for k in args.constants.split(",")) if args.constants else ()
    except ValueError:
        p.error(f"--constants must be comma-separated patch counts, got {args.constants!r}")
    if any(k <= 0 for k in constants):
        p.error(f"--constants must be positive patch counts, got {args.constants!r}")
    for name in ("train_images", "eval_images"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if not seeds or min(seeds) < 2000:
        p.error(f"--seeds must be proxy seeds >= 2000 (0-999 are the benchmarks', 1000 up the training's), "
                f"got {args.seeds!r}")
    torch.set_num_threads(1)
    try:
        record = react(Path(args.policy), seeds, Path(args.out), constants, args.train_images, args.eval_images,
                       show_progress=not args.no_progress)
    except ValueError as e:
        p.error(str(e))
    print("mean modeled time to target: " + ", ".join(f"{k} {v:.3f}" for k, v in record["mean_score"].items()),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

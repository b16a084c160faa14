"""keeprate: a learned keep-rate controller, trained once on a cheap proxy run, applied as is.

The paper's agent learns *which* patches to keep while the run it controls trains; this
one learns *how many* (``selection="count"``: keep-rate control, in the spirit of
DACBench's learning-rate control), from the env's ``"progress"`` observation (how far the
run has got, the training loss and its trend, a held-out probe's loss and accuracy,
patches kept so far; `patchenv.env.progress`). Which patches: k drawn uniformly at random per
image by the env, what PatchDropout and the token-count schedules do.

The policy is a Stable-Baselines3 model (DQN or PPO, unmodified, through SB3's own API)
trained on whole training runs of a tiny ViT (an episode = one run, a fresh ViT each
time). It picks one of ``levels`` counts (N/levels, 2N/levels, ..., N) every
``decide_every`` steps (the probe's interval, so every decision sees a fresh probe).
Because its observation is normalised by the run's budget (share done, not steps), the
same policy drives a run of any length. Three objectives, one packaged policy each
(``keeprate:objective=...``):

- ``progress`` (default): the env's ``reward="progress"``, the probe's loss decrease per
  unit of compute. Greedy per-FLOP efficiency: the policy learns to keep few patches.
- ``target``: what the benchmarks score, the compute to reach the accuracy plain training
  reaches. The target is the probe accuracy at the end of all-patch proxy runs; every
  decision costs its FLOPs (1 with every patch), the episode ends when the probe reaches
  the target, and missing it by the budget's end costs another whole run.
- ``time``: the benchmark's time to target, as ``agents.evolve --objective time`` scores
  the ``evolved:objective=time`` curve, so a standard algorithm learns on the very score
  CMA-ES ranked by. Fashion-MNIST proxy runs (`agents.evolve.proxy_images`: images the
  suites never evaluate on; tiny ViT, batch 64), each seeded like one of ``--proxy-seeds``
  all-patch reference runs, in turn. A decision costs the modeled time of its steps (a step
  keeping k patches costs ``--fixed-cost`` + k, in units of the reference's whole cost); the
  run is evaluated on its held-out images at each twentieth of that cost (from
  ``--first-check``) and the episode ends when it reaches the reference's final accuracy;
  spending the reference's FLOPs first is a miss, paying its cost share (at least 1) plus
  10 times the accuracy it lacked (`agents.evolve.TargetClock`). A run's return is minus
  its score (`agents.keeprate_task.PopulationRuns`). Trained with SB3's PPO (``--algo``; or
  DQN; `agents.keeprate_time`), without a probe (what the evolved curve saw), recording each run's return and
  score as a learning curve (``--report``). ``python -m agents.keeprate_reaction`` checks
  whether the policy reacts to the run or plays a schedule.

Apply it (no retraining; the packaged policies are
``agents/policies/keeprate-{progress,target}-digits.zip`` and
``agents/policies/keeprate-time-fmnist.zip``; the time objective's DQN, trained on
evolve's own proxy, is ``agents/policies/keeprate-time-dqn-fmnist.zip``, chosen with
``keeprate:objective=time:policy=agents/policies/keeprate-time-dqn-fmnist.zip``; the DQN
that learned evolved's climb (``--actions steps --n-steps 25``) is
``agents/policies/keeprate-time-dqn-steps-fmnist.zip``, which must decide as densely over a
run's plan as over its proxy's: ``decide_every=4215`` on ``fmnist-long``):

    python -m benchmarks.compare_selectors --selectors all,keeprate,keeprate:objective=target ...
    python -m benchmarks.compare_selectors --suite fmnist --selectors all,keeprate:objective=time
    patchenv train --agent keeprate --dataset fashion_mnist ...

Train one again (about 6 minutes on one CPU core; the recipe the packaged files came from):

    python -m agents.keeprate --objective progress   # or target; --out FILE to write elsewhere
    python -m agents.keeprate --population 16        # 16 proxy runs at once, one batched model

and the time policy (its header's ``recipe`` holds the command and every number; see
docs/results/2026-12-06-keeprate-time-fmnist.md):

    python -m agents.keeprate --objective time --algo ppo --report DIR
    python -m agents.keeprate --objective time --algo dqn --train-images 12000 --eval-images 4000 \
        --decide-every 178 --runs 180 --max-minutes 65 --out FILE --report DIR   # the DQN's

``--observe budget_done`` (any of the progress features, comma-separated) trains a policy
that reads those alone: ones that mean the same on a run of any length let a policy
trained on short proxies meet the same inputs on a long run (`agents.progress_view`).
``--gradient-steps G`` (DQN only) learns from each decision G times over (the replay
ratio): a decision costs ``--decide-every`` ViT steps, a gradient step next to nothing.
``--baseline-count K`` offsets each proxy seed's return by the score of a constant K-patch
run on that seed: the seed's difficulty leaves the return, the best policy does not change.
``--actions steps`` makes an action a move of the run's level (down one, stay, up one or
two) rather than a level, so that a climb is one action repeated.

The proxy runs are seeded from 1000 + ``--seed`` up: seeds 0-999 are the benchmarks' (the
packaged policies predate this rule; their first proxy run was seed 0's).

``train(env, steps)`` only acts: the policy is frozen while it controls a run (learning
online would need many runs of the run being controlled).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import gymnasium as gym
import torch

from agents.base import FORMAT, NO_PROBE, build_config
from agents.count_controller import CountController, FrozenPolicyConfig
from agents.evolve import FIXED_COST
# read_policy is re-exported: `agents.keeprate.read_policy` has been the policy file's reader since the start.
from agents.keeprate_file import PolicyHeader, read_policy, save_policy  # noqa: F401
from agents.keeprate_task import (ACTIONS, TRAIN_FREQ, Greedy, PopulationRuns, WholeRuns,
                                  all_patch_probe_accuracy, count_for)
from agents.keeprate_time import ALGORITHMS, learn
from agents.progress_view import SCALE_FREE
from patchenv.arrays import to_numpy

POLICIES = Path(__file__).with_name("policies")
PROXY_SEEDS = 1000  # training runs are seeded from here up; 0-999 are kept for evaluation
OBJECTIVES = ("progress", "target", "time")
# Time-objective flags that mean nothing to the other objectives.
TIME_ONLY = ("train_images", "eval_images", "proxy_seeds", "fixed_cost", "first_check", "max_minutes", "report",
             "algo", "observe", "gradient_steps", "baseline_count", "target_accuracy", "budget_epochs", "actions",
             "n_steps")


def packaged_policy(objective: str) -> Path:
    """The shipped policy trained for `objective` (see the module docstring): the time
    objective's on Fashion-MNIST proxies, the others' on digits."""
    return POLICIES / f"keeprate-{objective}-{'fmnist' if objective == 'time' else 'digits'}.zip"


@dataclass
class KeepRateConfig(FrozenPolicyConfig):
    objective: str = "progress"
    """which packaged policy to use: "progress" (trained on the env's progress reward), "target" (trained to reach the all-patch run's accuracy with the least compute) or "time" (trained with PPO for the least modeled time to it on Fashion-MNIST proxies; acts without a probe)"""

    OBJECTIVES = OBJECTIVES
    KIND = "a keeprate"

    def packaged(self, objective: str) -> Path:
        return packaged_policy(objective)


class KeepRate(CountController):
    """A trained DQN choosing how many patches to keep (module docstring)."""

    name = "keeprate"

    def __init__(self, *, selection: str = "count", **hyperparameters):
        super().__init__(selection=selection, hp=build_config(KeepRateConfig, hyperparameters))
        # its policy file's header (levels, what its actions mean, ...), read at setup
        self.header: Optional[PolicyHeader] = None
        self.policy: Optional[Greedy] = None  # its SB3 DQN or PPO acting greedily, read at setup

    def env_kwargs(self) -> dict:
        # The time policy learned without a probe (its proxies had none: agents.evolve's), the
        # others with one a decision.
        probe_every = NO_PROBE if self.hp.objective == "time" else self.hp.decide_every
        return {**super().env_kwargs(), "probe_every": probe_every}

    def setup(self, env) -> None:
        super().setup(env)
        if self.policy is None:
            self.header = PolicyHeader.read(self.hp.policy_path)
            self.policy = self.header.greedy()
        if self.header.actions == "steps":
            # A step moves one level a decision: the decisions must fall as densely over the
            # plan as they did in training, or the climb runs at another speed.
            every = self.header.steps_decide_every(env.unwrapped.total_steps)
            if abs(self.hp.decide_every - every) > max(1, 0.01 * every):
                raise ValueError(f"{self.hp.policy_path} moves its count a step a decision: on this run's "
                                 f"{env.unwrapped.total_steps} planned steps it decides every {every} steps, as "
                                 f"in training; got decide_every={self.hp.decide_every}")

    def ready(self) -> bool:
        return self.policy is not None

    def decide(self, obs) -> int:
        return self.policy.count(to_numpy(obs), self.num_patches)


def train_policy(out: Path, *, runs: int, epochs: int, levels: int, decide_every: int, seed: int,
                 dataset: str = "digits", objective: str = "progress", show_progress: bool = True,
                 population: int = 1, device: str = "cpu") -> dict:
    """Train the DQN on `runs` whole runs of the proxy task; save it to `out` (atomically).
    ``population=E`` > 1 trains on E proxy runs at once, one batched model
    (`agents.keeprate_task.PopulationRuns`): as many transitions, E per step, with E gradient
    steps per step (the single env's one per transition)."""
    from stable_baselines3 import DQN

    import patchenv  # noqa: F401  (registers the env ids)
    from patchenv.env.presets import PRESETS

    env_kwargs = dict(dataset=dataset, **{**PRESETS["tiny"], "batch_size": 32}, device=device, val_fraction=0.1,
                      selection="count", reward="progress", budget_epochs=epochs, probe_every=decide_every)
    env = gym.make("patchenv/PatchSelection-v1", **env_kwargs)
    u = env.unwrapped
    decisions = math.ceil(u.total_steps / decide_every)
    target = all_patch_probe_accuracy(WholeRuns(env, levels, decide_every)) if objective == "target" else None
    wrapped = WholeRuns(env, levels, decide_every, target)
    learner = wrapped
    if population > 1:
        from patchenv.population import PopulationEnv

        learner = PopulationRuns(PopulationEnv(population, **env_kwargs), levels, decide_every, target)
    model = DQN("MlpPolicy", learner, learning_rate=1e-3, buffer_size=20000, learning_starts=2 * decisions,
                batch_size=64, gamma=0.98 if objective == "progress" else 0.995, train_freq=TRAIN_FREQ,
                gradient_steps=population, target_update_interval=4 * decisions,
                exploration_fraction=0.4, exploration_final_eps=0.05, policy_kwargs=dict(net_arch=[64, 64]),
                seed=seed, verbose=0, device="cpu")
    # The proxy runs are seeded from PROXY_SEEDS up: seeds 0-999 are the benchmarks' (the
    # runs a policy is judged on), and SB3 would otherwise start the first proxy run from
    # `seed` itself, the very run `compare_selectors --seeds 0` evaluates on.
    model.get_env().seed(PROXY_SEEDS + seed)
    start = time.perf_counter()
    model.learn(total_timesteps=runs * decisions, progress_bar=show_progress)
    elapsed = time.perf_counter() - start
    header = {"format": FORMAT, "agent": KeepRate.name, "levels": levels,
              "recipe": {"dataset": dataset, "preset": "tiny", "batch_size": 32, "epochs": epochs, "runs": runs,
                         "levels": levels, "decide_every": decide_every, "seed": seed, "objective": objective,
                         "target": target, "population": population, "device": device,
                         "proxy_seeds_from": PROXY_SEEDS + seed,
                         "train_time_s": round(elapsed, 1)},
              "config": {"selection": "count", "objective": objective, "policy": str(out),
                         "decide_every": decide_every, "seed": seed},
              "state": {}}
    save_policy(model, out, header)
    # What the trained policy does along a fresh run: its count at each decision.
    counts = rollout_counts(model, wrapped, seed=10_000 + seed)
    env.close()
    if learner is not wrapped:
        learner.close()
    return {"train_time_s": elapsed, "decisions": runs * decisions, "counts": counts, "target": target}


def train_time_policy(out: Path, **kwargs) -> dict:
    """Train on the time objective (`agents.keeprate_time.learn`, its keyword arguments) and
    save the policy to `out` with its recipe; returns the recipe and the learning curve."""
    model, result = learn(**kwargs)
    recipe = result["recipe"]
    save_policy(model, out, {"format": FORMAT, "agent": KeepRate.name, "levels": recipe["levels"],
                             "actions": recipe["actions"], "algorithm": recipe["algorithm"], "recipe": recipe,
                             "config": {"selection": "count", "objective": "time", "policy": str(out),
                                        "decide_every": recipe["decide_every"], "seed": recipe["seed"]},
                             "state": {}})
    return result


def rollout_counts(model, wrapped: WholeRuns, seed: int) -> list[int]:
    obs, _ = wrapped.reset(seed=seed)
    counts, done = [], False
    while not done:
        level, _ = model.predict(obs, deterministic=True)
        counts.append(count_for(int(level), wrapped.levels, wrapped.env.unwrapped.num_patches))
        obs, _, terminated, truncated, _ = wrapped.step(level)
        done = terminated or truncated
    return counts


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agents.keeprate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--objective", choices=OBJECTIVES, default="progress",
                   help="progress: the env's reward (probe loss decrease per unit of compute); target: the compute "
                        "to reach the all-patch run's final probe accuracy; time: the modeled time to reach the "
                        "all-patch reference's final held-out accuracy, agents.evolve's time score (default: progress)")
    p.add_argument("--out", default=None,
                   help="policy file to write (default: the packaged one for --objective, "
                        f"{packaged_policy('OBJECTIVE')})")
    p.add_argument("--dataset", default=None,
                   help="the proxies' data set (default: digits; fashion_mnist for --objective time)")
    p.add_argument("--runs", type=int, default=60, help="whole proxy training runs to learn from (default: 60)")
    p.add_argument("--epochs", type=int, default=10, help="epochs per proxy run (default: 10)")
    p.add_argument("--levels", type=int, default=8, help="count levels the policy picks from (default: 8)")
    p.add_argument("--decide-every", type=int, default=20, help="env steps per decision (default: 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--population", type=int, default=1,
                   help="proxy runs trained at once as one batched model (patchenv.population; default: 1, one by one)")
    p.add_argument("--device", default="cpu", help="the proxy runs' device (default: cpu; the policy learns on the CPU)")
    time_only = p.add_argument_group("--objective time only")
    time_only.add_argument("--algo", choices=ALGORITHMS, default=None, help="the SB3 algorithm (default: ppo)")
    time_only.add_argument("--train-images", type=int, default=None,
                           help="images a proxy run trains on (agents.evolve.proxy_images; default: 2000)")
    time_only.add_argument("--eval-images", type=int, default=None,
                           help="held-out images its target is checked on (default: 500)")
    time_only.add_argument("--proxy-seeds", type=int, default=None,
                           help="proxy seeds (1000 + --seed up) the runs cycle through, an all-patch reference "
                                "each (default: 8)")
    time_only.add_argument("--fixed-cost", type=float, default=None,
                           help=f"a step's cost that does not shrink with the patches, in patch-steps "
                                f"(default: {FIXED_COST:g}, agents.evolve's)")
    time_only.add_argument("--first-check", type=float, default=None,
                           help="share of the reference's modeled time before a run's first check (default: 0.3)")
    time_only.add_argument("--max-minutes", type=float, default=None,
                           help="stop training after this much wall clock, references included (default: none)")
    time_only.add_argument("--observe", default=None,
                           help="comma-separated progress features the policy reads (default: all of them); "
                                f"{','.join(SCALE_FREE)} are the ones that mean the same on a run of any length")
    time_only.add_argument("--gradient-steps", type=int, default=None,
                           help="the DQN's gradient steps per decision, its replay ratio (default: one per run of "
                                "the population); a decision costs --decide-every ViT steps, a gradient step "
                                "next to nothing")
    time_only.add_argument("--n-steps", type=int, default=None,
                           help="the DQN learns from n-step returns (SB3's n_steps; default: 1): the rewards "
                                "of the next N decisions, so a choice is credited with the run's time it saves "
                                "even when the observation does not show what the run was fed")
    time_only.add_argument("--baseline-count", type=int, default=None,
                           help="offset each proxy seed's return by the score a constant run at this many patches "
                                "earns on it, which takes the seed's difficulty out of the return (default: none)")
    time_only.add_argument("--target-accuracy", type=float, default=None,
                           help="one held-out accuracy target for every proxy seed, fixed beforehand, instead of "
                                "each seed's all-patch reference's final accuracy (the suites' way; no reference "
                                "runs; default: none)")
    time_only.add_argument("--budget-epochs", type=int, default=None,
                           help="with --target-accuracy: a run's budget, the all-patch FLOPs of this many epochs, "
                                "computed (default: --epochs, the plan)")
    time_only.add_argument("--actions", choices=ACTIONS, default=None,
                           help="what an action means: levels, the count level to hold; steps, a move of the "
                                "run's level by -1, 0, +1 or +2 (default: levels)")
    time_only.add_argument("--report", default=None,
                           help="folder for the learning curve (learning_curve.json and .png; default: none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    for name in ("runs", "epochs", "levels", "decide_every", "population", "train_images", "eval_images",
                 "proxy_seeds", "gradient_steps", "baseline_count", "budget_epochs", "n_steps"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            p.error(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    if args.max_minutes is not None and not args.max_minutes > 0:
        p.error(f"--max-minutes must be a positive number, got {args.max_minutes}")
    if args.objective != "time":
        given = [name for name in TIME_ONLY if getattr(args, name) is not None]
        if given:
            p.error(f"--{given[0].replace('_', '-')} is for --objective time only, got --objective {args.objective}")
    torch.set_num_threads(1)
    out = Path(args.out) if args.out else packaged_policy(args.objective)
    if args.objective == "time":
        argv_used = sys.argv[1:] if argv is None else argv
        try:
            result = train_time_policy(
                out, runs=args.runs, epochs=args.epochs, levels=args.levels, decide_every=args.decide_every,
                seed=args.seed, algo=args.algo or "ppo", dataset=args.dataset or "fashion_mnist",
                train_images=args.train_images or 2000, eval_images=args.eval_images or 500,
                proxy_seeds=args.proxy_seeds or 8, population=args.population, device=args.device,
                fixed_cost=FIXED_COST if args.fixed_cost is None else args.fixed_cost,
                first_check=0.3 if args.first_check is None else args.first_check,
                max_minutes=args.max_minutes, report=Path(args.report) if args.report else None,
                show_progress=not args.no_progress, observe=args.observe, gradient_steps=args.gradient_steps,
                baseline_count=args.baseline_count, target_accuracy=args.target_accuracy,
                budget_epochs=args.budget_epochs, actions=args.actions or "levels", n_steps=args.n_steps,
                command=" ".join(["python -m agents.keeprate", *argv_used]))
        except ValueError as e:
            p.error(str(e))
        runs = result["runs"]
        print(f"trained on {len(runs)} proxy runs ({result['recipe']['decisions']} decisions) in "
              f"{result['recipe']['train_time_s']:.0f} s; saved {out}", file=sys.stderr)
        return 0
    result = train_policy(out, runs=args.runs, epochs=args.epochs, levels=args.levels, objective=args.objective,
                          decide_every=args.decide_every, seed=args.seed, show_progress=not args.no_progress,
                          population=args.population, device=args.device, dataset=args.dataset or "digits")
    target = "" if result["target"] is None else f" (target probe accuracy {result['target']:.4f})"
    print(f"trained on {args.runs} runs ({result['decisions']} decisions) in {result['train_time_s']:.0f} s{target}; "
          f"saved {out}", file=sys.stderr)
    print(f"counts along a fresh run: {result['counts']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

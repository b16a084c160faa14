"""keeprate's time objective, trained: SB3's PPO (or DQN), unmodified, on Fashion-MNIST proxy
runs scored as ``agents.evolve --objective time`` scores a curve (``agents.keeprate``'s
docstring; the task is `agents.keeprate_task.PopulationRuns` with references). Called by
``python -m agents.keeprate --objective time``; writes the policy with its recipe, and the
learning curve: each finished proxy run's return, score and levels, as JSON and a plot
(`learn`; ``agents.keeprate.train_time_policy`` saves the policy it returns).
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from agents.evolve import CHECKS, FIXED_COST, PROXY_SEEDS, PROXY_SPLIT_SEED
from agents.keeprate_task import TRAIN_FREQ, PopulationRuns, action_count, count_for
from agents.progress_view import ObserveFeatures, parse_features
from patchenv.atomic import atomic_write, atomic_write_json
from patchenv.env.progress import PROGRESS_FEATURES

ALGORITHMS = ("dqn", "ppo")

# The time objective's PPO (SB3's defaults but for these): gamma 1, as the return is minus
# the modeled time to target itself; a few proxy runs a rollout (a run is 10-40 decisions),
# as runs are what is scarce; a small net for 9 numbers in.
PPO_HYPERPARAMETERS = dict(n_steps=64, batch_size=32, n_epochs=10, learning_rate=3e-4, gamma=1.0, gae_lambda=0.95,
                           clip_range=0.2, ent_coef=0.01, policy_kwargs=dict(net_arch=[64, 64]))
# learn()'s timestep bound over the runs' planned decisions: a run at the fewest patches
# can take many times its planned steps to spend the reference's FLOPs.
TIMESTEP_SLACK = 50
# The time objective's DQN: the other objectives' settings (train_policy), undiscounted;
# epsilon decays over the first 0.4 of the runs asked for.
DQN_HYPERPARAMETERS = dict(learning_rate=1e-3, buffer_size=20000, batch_size=64, gamma=1.0, train_freq=TRAIN_FREQ,
                           exploration_fraction=0.4, exploration_final_eps=0.05,
                           policy_kwargs=dict(net_arch=[64, 64]))


def learn(*, runs: int, epochs: int, train_images: int, eval_images: int, proxy_seeds: int, levels: int,
          decide_every: int, seed: int, algo: str = "ppo", fixed_cost: float = FIXED_COST, first_check: float = 0.3,
          dataset: str = "fashion_mnist", population: int = 1, device: str = "cpu", data_root=None,
          report: Optional[Path] = None, max_minutes: Optional[float] = None, show_progress: bool = True,
          command: Optional[str] = None, observe: Optional[Sequence[str]] = None,
          gradient_steps: Optional[int] = None, baseline_count: Optional[int] = None,
          target_accuracy: Optional[float] = None, budget_epochs: Optional[int] = None,
          actions: str = "levels", n_steps: Optional[int] = None) -> tuple:
    """Train an SB3 `algo` (unmodified) on the time objective (module docstring) for `runs`
    finished proxy runs (or until `max_minutes` of wall clock, references included), the
    policy reading the progress features `observe` alone (`agents.progress_view`; None: all
    of them); the DQN takes `gradient_steps` gradient steps a decision (None: one per run of
    the population) and, given `n_steps`, learns from n-step returns (SB3's own option; at
    least a run's decisions: the run's whole remaining return); given `baseline_count` K, each proxy seed's return is offset by the score
    a constant K-patch run earns on it (`PopulationRuns`' baselines; K-patch runs scored once
    a seed, like the references); given `target_accuracy`, every proxy seed has that target
    and a budget of the all-patch FLOPs of `budget_epochs` (default `epochs`, the plan),
    computed, with no reference run (`agents.evolve.fixed_target_references`, the suite's
    way); `actions` "steps" makes an action a move of the run's level rather than a level
    (`agents.keeprate_task.played_level`); given `report` (a folder), write the learning curve there (``learning_curve.json``,
    ``learning_curve.png``). Returns the model and {"recipe", "runs"} (the curve)."""
    from stable_baselines3 import DQN, PPO
    from tqdm.auto import tqdm

    from agents.evolve import env_kwargs, proxy_images, references, score_curves
    from patchenv.population import PopulationEnv

    if algo not in ALGORITHMS:
        raise ValueError(f"--algo must be one of {', '.join(ALGORITHMS)}, got {algo!r}")
    if not (math.isfinite(fixed_cost) and fixed_cost >= 0):
        raise ValueError(f"--fixed-cost must be a finite number >= 0, got {fixed_cost}")
    if not 0 < first_check <= 1:
        raise ValueError(f"--first-check must be in (0, 1], got {first_check}")
    if gradient_steps is not None and (algo != "dqn" or gradient_steps <= 0):
        raise ValueError(f"--gradient-steps is a positive integer for --algo dqn only, got {gradient_steps} "
                         f"with --algo {algo}")
    if n_steps is not None and (algo != "dqn" or n_steps <= 0):
        raise ValueError(f"--n-steps is a positive integer for --algo dqn only, got {n_steps} with --algo {algo}")
    if budget_epochs is not None and target_accuracy is None:
        raise ValueError(f"--budget-epochs goes with --target-accuracy (a reference run's budget is its own), "
                         f"got --budget-epochs {budget_epochs} alone")
    action_count(levels, actions)  # a one-line error for an unknown kind, before any run
    observe = parse_features(observe)
    start = time.perf_counter()
    images = proxy_images(dataset, train_images, eval_images, data_root).to(device)
    pop = PopulationEnv(population, **env_kwargs(images, epochs, device))
    num_patches = pop.runs[0].num_patches
    if baseline_count is not None and not 1 <= baseline_count <= num_patches:
        pop.close()
        raise ValueError(f"--baseline-count must be a patch count in [1, {num_patches}], got {baseline_count}")
    seeds = [PROXY_SEEDS + seed + j for j in range(proxy_seeds)]
    try:
        refs = references(pop, seeds, show_progress, target_accuracy, budget_epochs)
    except ValueError:
        pop.close()
        raise
    baselines = None
    if baseline_count is not None:  # what a constant count scores on each seed: its difficulty
        baselines = [score_curves(pop, [ConstantCount(baseline_count)], ref, decide_every, first_check, "time",
                                  fixed_cost)[0]
                     for ref in tqdm(refs, desc=f"{baseline_count}-patch baselines", disable=not show_progress)]
    venv = PopulationRuns(pop, levels, decide_every, references=refs, first_check=first_check, fixed_cost=fixed_cost,
                          baselines=baselines, actions=actions)
    # SB3 spreads DQN's exploration over `total_timesteps`, which is a loose bound (below):
    # scale its fraction so that epsilon decays over that share of the runs asked for.
    hyperparameters = PPO_HYPERPARAMETERS if algo == "ppo" else {
        **DQN_HYPERPARAMETERS, "learning_starts": 2 * venv.planned_decisions,
        "gradient_steps": population if gradient_steps is None else gradient_steps,
        **({} if n_steps is None else {"n_steps": n_steps}),
        "target_update_interval": 4 * venv.planned_decisions,
        "exploration_fraction": DQN_HYPERPARAMETERS["exploration_fraction"] / TIMESTEP_SLACK}
    learner = venv if observe == PROGRESS_FEATURES else ObserveFeatures(venv, observe)
    model = (PPO if algo == "ppo" else DQN)("MlpPolicy", learner, **hyperparameters, seed=seed, verbose=0, device="cpu")
    log = RunLog(runs, start, tqdm(total=runs, desc=f"{algo} proxy runs", disable=not show_progress),
                 max_seconds=None if max_minutes is None else 60.0 * max_minutes)
    with log.bar:
        # A run at the fewest patches can take many times its planned steps to spend the
        # reference's FLOPs: the bound is loose, the callback stops at `runs` runs.
        model.learn(total_timesteps=runs * venv.planned_decisions * TIMESTEP_SLACK, callback=log)
    elapsed = time.perf_counter() - start
    learner.close()
    recipe = {"command": command, "dataset": dataset, "preset": "tiny", "batch_size": 64, "epochs": epochs,
              "train_images": train_images, "eval_images": eval_images, "proxy_split_seed": PROXY_SPLIT_SEED,
              "proxy_seeds": seeds, "references": [dataclasses.asdict(r) for r in refs],
              "objective": "time", "observe": list(observe), "baseline_count": baseline_count,
              "baselines": baselines, "fixed_cost": fixed_cost, "first_check": first_check, "checks": CHECKS,
              "target_accuracy": target_accuracy, "budget_epochs": budget_epochs or epochs,
              "target": ("the all-patch reference's final held-out accuracy on the run's proxy seed"
                         if target_accuracy is None else "target_accuracy, held-out, on every proxy seed")
                        + ", checked each time the run's modeled time crosses a twentieth of the reference's (the "
                          "planned steps at all patches), from first_check on",
              "miss": "at the budget's FLOPs (the reference's, or budget_epochs of all patches): the modeled time "
                      "share (at least 1) plus 10 times the accuracy lacked; a diverged run 2",
              "num_patches": num_patches, "levels": levels, "actions": actions, "decide_every": decide_every, "algorithm": algo,
              "hyperparameters": hyperparameters, "runs": len(log.runs), "decisions": model.num_timesteps,
              "max_minutes": max_minutes, "seed": seed, "population": population, "device": device,
              "torch_threads": torch.get_num_threads(),
              "train_time_s": round(elapsed, 1)}
    result = {"recipe": recipe, "runs": log.runs}
    if report is not None:
        report.mkdir(parents=True, exist_ok=True)
        atomic_write_json(report / "learning_curve.json", result)
        plot_learning_curve(result, report / "learning_curve.png", num_patches)
    return model, result


@dataclasses.dataclass(frozen=True)
class ConstantCount:
    """A curve (`agents.evolve.score_curves`) keeping `k` patches throughout: the baselines' and
    the reaction check's constants."""

    k: int

    def count(self, obs, num_patches: int) -> int:
        return self.k


class RunLog(BaseCallback):
    """Records each finished proxy run (its return, its score, whether it reached the
    target, the levels it chose) and stops the training after `runs` of them."""

    def __init__(self, runs: int, start: float, bar, max_seconds: Optional[float] = None):
        super().__init__()
        self.wanted, self.start, self.bar, self.max_seconds = runs, start, bar, max_seconds
        self.runs: list[dict] = []
        self._returns: Optional[np.ndarray] = None  # each env's return so far, and its levels
        self._levels: list[list[int]] = []

    def _on_step(self) -> bool:
        rewards, dones, infos = self.locals["rewards"], self.locals["dones"], self.locals["infos"]
        actions = np.asarray(self.locals["actions"]).reshape(len(dones))
        if self._returns is None:
            self._returns, self._levels = np.zeros(len(dones)), [[] for _ in dones]
        for i, done in enumerate(dones):
            self._returns[i] += float(rewards[i])
            self._levels[i].append(int(infos[i].get("level", actions[i])))  # the level played
            if done:
                info = infos[i]
                self.runs.append({"run": len(self.runs) + 1, "proxy_seed": info["proxy_seed"],
                                  "return": round(float(self._returns[i]), 5), "score": round(info["run_score"], 5),
                                  "reached": info["reached"], "baseline": info["baseline"],
                                  "levels": self._levels[i],
                                  "decisions_so_far": self.num_timesteps,
                                  "elapsed_s": round(time.perf_counter() - self.start, 1)})
                self._returns[i], self._levels[i] = 0.0, []
                self.bar.update()
                self.bar.set_postfix(score=f"{info['run_score']:.3f}")
        # A wall-clock limit ends the training between decisions (the runs so far are its recipe's).
        late = self.max_seconds is not None and time.perf_counter() - self.start > self.max_seconds
        return len(self.runs) < self.wanted and not late


def plot_learning_curve(curve: dict, path: Path, num_patches: int) -> None:
    """Three panels from a learning curve (``train_time_policy``'s result, or its
    ``learning_curve.json``): each finished proxy run's modeled time to target (its score;
    misses marked) against the runs consumed, with a running median; the mean count it
    chose; and the count along a run (against ``budget_done``), averaged over the first and
    the last tenth of the runs. `num_patches`: the proxies' N (a level's count)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs, recipe = curve["runs"], curve["recipe"]
    planned = math.ceil(recipe["references"][0]["steps"] / recipe["decide_every"])
    counts = [[count_for(level, recipe["levels"], num_patches) for level in r["levels"]] for r in runs]
    x = np.array([r["run"] for r in runs])
    score = np.array([r["score"] for r in runs])
    reached = np.array([r["reached"] for r in runs])
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4))
    a.scatter(x[reached], score[reached], s=10, label="reached the target")
    a.scatter(x[~reached], score[~reached], s=14, marker="x", color="tab:red", label="missed (score: the penalty)")
    window = max(1, len(runs) // 10)
    a.plot(x, [np.median(score[max(0, j - window + 1):j + 1]) for j in range(len(runs))], color="black",
           label=f"running median ({window} runs)")
    a.set(xlabel="proxy runs consumed", ylabel="modeled time to target / all's (= -return)",
          title=f"keeprate {recipe['algorithm']}, time objective", ylim=(0, max(2.5, float(np.median(score)) * 2)))
    a.legend()
    b.plot(x, [np.mean(k) for k in counts], ".", ms=4)
    b.set(xlabel="proxy runs consumed", ylabel="mean patches kept over the run", title="what it chose", ylim=(0, 65))
    for part, name in ((counts[:window], f"first {window} runs"), (counts[-window:], f"last {window} runs")):
        longest = max(len(k) for k in part)
        mean = [np.mean([k[j] for k in part if len(k) > j]) for j in range(longest)]
        c.step(np.arange(longest) / planned, mean, where="post", label=name)
    c.set(xlabel="budget_done (share of the planned steps)", ylabel="patches kept (mean over runs)",
          title="count along a run", ylim=(0, 65))
    c.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    plt.close(fig)

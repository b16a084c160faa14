"""Where should a step (8 patches, then 40, the DQN's two levels) switch on evolve's proxy?
Scores step schedules switching at each of --switches (shares of the plan) on held-out proxy
seeds, exactly as the time objective scores a policy (agents.evolve.score_curves,
objective "time", evolve's fixed cost and checks), beside the evolved curve:

    python reports/keeprate-time-v4-2026-12-07/step_sweep.py --switches 0.3,0.5,0.7 --out DIR

--train-images/--epochs select another proxy; --target-accuracy (with --budget-epochs) the
fixed-target proxy (agents.evolve.fixed_target_references); --constants K,... scores
constant counts beside the steps (64: the all-patch run). Writes step_sweep.json into --out. Draws
step_sweep.png from it, with other controllers' scores on the same seeds as lines
(--plot-only JSON [--line NAME=SCORE ...] redraws it from a written file).
"""
import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from agents.evolve import FIXED_COST, env_kwargs, proxy_images, references, score_curves
from agents.evolved_curve import PACKAGED_FOR
from agents.evolved_curve import read_policy as read_curve
from agents.keeprate_reaction import EVAL_SEEDS, Schedule
from agents.keeprate_time import ConstantCount
from patchenv.atomic import atomic_write_json
from patchenv.population import PopulationEnv


def plot(record: dict, path: Path, lines: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = {float(k.rsplit(" ", 1)[1]): v for k, v in record["scores"].items() if k.startswith("step")}
    xs = sorted(steps)
    fig, ax = plt.subplots(figsize=(7, 4))
    for x in xs:
        ax.scatter([x] * len(steps[x]), steps[x], color="tab:blue", alpha=0.4, s=14)
    ax.plot(xs, [np.mean(steps[x]) for x in xs], "o-", color="tab:blue", label="step 8 -> 40 patches: mean")
    for (name, score), color in zip(lines.items(), ("black", "tab:red", "tab:orange", "tab:green")):
        ax.axhline(score, color=color, ls="--", lw=1, label=f"{name} ({score:.3f})")
    ax.set(xlabel="switch (share of the planned steps, budget_done)",
           ylabel="modeled time to target / reference's",
           title=f"step schedules on the proxy, held-out seeds {','.join(map(str, record['seeds']))}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--plot-only", type=Path, default=None)
    p.add_argument("--line", action="append", default=[], help="NAME=SCORE, a controller's mean score to draw")
    p.add_argument("--switches")
    p.add_argument("--low", type=int, default=8)
    p.add_argument("--high", type=int, default=40)
    p.add_argument("--train-images", type=int, default=12000)
    p.add_argument("--eval-images", type=int, default=4000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--decide-every", type=int, default=178)
    p.add_argument("--seeds", default=",".join(map(str, EVAL_SEEDS)))
    p.add_argument("--evolved", action="store_true", help="score the evolved curve as well")
    p.add_argument("--constants", default="", help="comma-separated constant counts to score as well")
    p.add_argument("--target-accuracy", type=float, default=None, help="a fixed target (default: each reference's)")
    p.add_argument("--budget-epochs", type=int, default=None, help="with --target-accuracy (default: --epochs)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    lines = {name: float(score) for name, score in (line.split("=", 1) for line in args.line)}
    if args.plot_only is not None:
        plot(json.loads(args.plot_only.read_text()), args.out / "step_sweep.png", lines)
        return 0
    if args.switches is None:
        p.error("--switches (comma-separated shares of the plan) is needed unless --plot-only")
    torch.set_num_threads(1)
    start = time.perf_counter()
    switches = [float(s) for s in args.switches.split(",") if s]
    seeds = [int(s) for s in args.seeds.split(",")]
    pop = PopulationEnv(1, **env_kwargs(proxy_images("fashion_mnist", args.train_images, args.eval_images),
                                        args.epochs, "cpu"))
    refs = references(pop, seeds, target_accuracy=args.target_accuracy, budget_epochs=args.budget_epochs)
    total = pop.runs[0].total_steps
    decisions = math.ceil(total / args.decide_every) * 4  # past the plan: a run may overrun it
    curves = {f"step {args.low}->{args.high} at {s:g}": Schedule(
        [args.low if j * args.decide_every / total < s - 1e-9 else args.high for j in range(decisions)],
        args.decide_every, total) for s in switches}
    for k in filter(None, args.constants.split(",")):
        curves[f"constant {int(k)}"] = ConstantCount(int(k))
    if args.evolved:
        curves["evolved"] = read_curve(PACKAGED_FOR["time"])[0]
    score = dict(decide_every=args.decide_every, first_check=0.3, objective="time", fixed_cost=FIXED_COST)
    scores = {name: [score_curves(pop, [curve], ref, **score)[0] for ref in refs] for name, curve in curves.items()}
    record = {"train_images": args.train_images, "eval_images": args.eval_images, "epochs": args.epochs,
              "target_accuracy": args.target_accuracy, "budget_epochs": args.budget_epochs or args.epochs,
              "decide_every": args.decide_every, "seeds": seeds, "references": [r.__dict__ for r in refs],
              "scores": scores, "mean": {k: float(np.mean(v)) for k, v in scores.items()},
              "time_s": round(time.perf_counter() - start, 1), "torch_threads": torch.get_num_threads()}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "step_sweep.json", record)
    plot(record, args.out / "step_sweep.png", lines)
    for k, v in scores.items():
        print(k, [round(x, 3) for x in v], round(float(np.mean(v)), 3))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

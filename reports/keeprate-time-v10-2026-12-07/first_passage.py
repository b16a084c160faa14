"""Why the first target's time part is missed seed by seed on ``fmnist-long``: a run's time
to the target is a first passage, and `all` makes it on a plateau.

The suite's target (87.26% validation accuracy) sits one point under the plateau `all`
creeps along for tens of epochs, with the validation accuracy moving by more than a point
from one evaluation to the next. So when `all` first reaches the target is largely
chance. A learned selector reaches it while it climbs to every patch, where the accuracy
rises fast, so its time to target hardly moves between seeds. A per-seed ratio of the two
then carries `all`'s chance almost alone.

From the runs' curves (no clock is read: a run's cost is its steps under the time
objective's own cost model, `F + k` patch-steps a step keeping k patches, in units of
`all`'s epoch, `F + 64` patch-steps a step):

- each run's epochs to the target, and its modeled cost to it, at F = 24 (the objective's
  value, which the interleaved sweep of 2026-12-07 matched within 0.06), 12 (half of it)
  and 0 (no fixed cost: the FLOPs' view, the attention's square term left out);
- the spread of both between seeds, `all` against the selectors;
- `all`'s validation accuracy around a smooth trend on the two 100-epoch calibration runs:
  the noise a first passage rides on, and the trend's slope near the target;
- the chance that a selector of a given cost passes the per-seed bar (0.50x `all`'s time)
  on 5 seeds out of 5, with `all`'s epochs to target drawn from those measured (seeds
  independent), and the cost that would give that a chance of 0.8.

    python reports/keeprate-time-v10-2026-12-07/first_passage.py --out DIR \\
        --stopped RESULTS_JSON [RESULTS_JSON ...] --calibration CALIBRATION_RESULTS_JSON

``--stopped``: suites run with ``stop_at_target`` (their ``epochs`` is the epoch to target);
``--calibration``: `all` trained on without stopping (the first epoch at the target is read
off the curve, at an epoch's granularity). Writes first_passage.json, first_passage.md and
first_passage.png.
"""
import argparse
import json
import math
from pathlib import Path
from statistics import NormalDist

import numpy as np

from benchmarks.common import modeled_steps, pyplot, save_figure
from patchenv.atomic import atomic_write_json, atomic_write_text

TARGET = 0.8726
FIXED_COSTS = (0, 12, 24)
BAR = 0.50  # the first target's time part: <= 0.50x all's time to target
SEEDS_PER_SUITE = 5
KINDS = {"all": "all", "keeprate": "DQN", "evolved": "evolved", "grow": "grow"}  # selector name prefix -> kind
HAND = "grow:k0=9:start=0.63:fraction=1.02:selection=image"  # evolved's curve written as a schedule


def order(kind: str):
    fixed = ("all", "DQN", "evolved", "grow", "hand schedule")
    return (fixed.index(kind), "") if kind in fixed else (len(fixed), kind)


def kind_of(selector: str):
    if selector in ("all", "grow"):
        return selector
    if selector == HAND:
        return "hand schedule"
    if selector.startswith("grow:"):  # a climb of the grid: "climb START-FRACTION"
        opts = dict(kv.split("=") for kv in selector.split(":")[1:])
        return f"climb {opts.get('start', '0')}-{opts.get('fraction', '0.75')}"
    prefix = selector.split(":")[0]
    return KINDS.get(prefix) if ":" in selector else None


def cost_epochs(run: dict, fixed: float, upto_step=None) -> float:
    """The run's modeled cost in `all`-epochs (`benchmarks.common.modeled_steps` over an
    epoch's steps); `upto_step`: up to that step."""
    curve = run["curve"]
    return modeled_steps(curve, fixed, run["num_patches"], upto_step) / curve[0]["global_step"]


def first_epoch_at_target(curve: list[dict]):
    """(epoch, global step) of the first epoch-end evaluation at the target, or None."""
    return next(((e["epoch"], e["global_step"]) for e in curve if e["val_accuracy"] >= TARGET), None)


def load_runs(stopped: list[str], calibration: list[str]) -> list[dict]:
    """One row per (kind, seed): epochs and modeled costs to the target, from the first file
    naming it (later files add seeds, not repeats: the runs are deterministic)."""
    rows, seen = [], set()
    for path, is_cal in [(p, False) for p in stopped] + [(p, True) for p in calibration]:
        for run in json.loads(Path(path).read_text())["runs"]:
            kind = kind_of(run["selector"])
            seed = int(run["seed"])
            if kind is None or (kind, seed) in seen:
                continue
            curve = run["curve"]
            if is_cal:
                hit = first_epoch_at_target(curve)
                if hit is None:
                    continue
                epochs, upto = float(hit[0]), hit[1]
            else:
                if not run.get("time_to_target_s"):
                    continue  # did not reach the target
                epochs, upto = float(run["epochs"]), None
            seen.add((kind, seed))
            rows.append({"kind": kind, "seed": seed, "source": path, "calibration": is_cal,
                         "epochs_to_target": epochs,
                         "cost_epochs": {str(f): cost_epochs(run, f, upto) for f in FIXED_COSTS},
                         "curve": [(e["epoch"], e["val_accuracy"], e["mean_patches_kept"]) for e in curve]})
    return rows


def spread(values) -> dict:
    v = np.asarray(values, float)
    return {"n": int(v.size), "mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else None,
            "cv": float(v.std(ddof=1) / v.mean()) if v.size > 1 else None, "min": float(v.min()),
            "max": float(v.max())}


def plateau_noise(rows: list[dict], lo: int = 30, hi: int = 80, half: int = 5) -> dict:
    """`all`'s validation accuracy on the calibration runs against its centred running mean
    (2*half+1 epochs) over epochs lo..hi: the residuals' sd (points), and the running mean's
    slope where it crosses the target (points an epoch)."""
    out = {}
    for r in rows:
        if r["kind"] != "all" or not r["calibration"]:
            continue
        acc = np.array([a for _, a, _ in r["curve"]]) * 100
        ep = np.array([e for e, _, _ in r["curve"]])
        smooth = np.array([acc[max(0, i - half):i + half + 1].mean() for i in range(len(acc))])
        sel = (ep >= lo) & (ep <= hi)
        resid = acc[sel] - smooth[sel]
        above = np.flatnonzero(smooth >= TARGET * 100)
        cross = int(above[0]) if above.size else None
        slope = (float(np.polyfit(ep[max(0, cross - half):cross + half + 1],
                                  smooth[max(0, cross - half):cross + half + 1], 1)[0])
                 if cross is not None else None)
        out[str(r["seed"])] = {"residual_sd_points": float(resid.std(ddof=1)),
                               "trend_crosses_target_at_epoch": float(ep[cross]) if cross is not None else None,
                               "first_epoch_at_target": r["epochs_to_target"],
                               "trend_slope_points_per_epoch": slope}
    return out


def check_noise(paths: list[str], epochs: float = 10.0) -> dict:
    """The evaluations a run made near the target (epoch ends and the checks inside epochs)
    over its last `epochs` epochs: their sd around a straight line (points), the line's
    slope (points an epoch), and how many of them there were."""
    out = {}
    for path in paths:
        m = json.loads(Path(path).read_text())
        evals = sorted([(c["epoch"], c["val_accuracy"]) for c in m["checks"]]
                       + [(e["epoch"], e["val_accuracy"]) for e in m["epochs"]])
        last = evals[-1][0]
        e, a = np.array([(x, 100 * y) for x, y in evals if x > last - epochs]).T
        fit = np.polyfit(e, a, 1)
        agent = m["meta"]["config"]["agent"]
        out[f"{kind_of(agent) or agent} seed {m['meta']['config']['seed']}"] = {
            "evaluations": int(e.size), "residual_sd_points": float((a - np.polyval(fit, e)).std(ddof=2)),
            "slope_points_per_epoch": float(fit[0]), "first_at_target_epoch": float(last)}
    return out


def climb_slope(r: dict, window: int = 5) -> float:
    """A run's validation accuracy slope (points an epoch) over its last `window` whole epochs
    before the target."""
    pts = [(e, a * 100) for e, a, _ in r["curve"] if float(e).is_integer()][-window - 1:-1]
    if len(pts) < 3:
        return float("nan")
    e, a = np.array(pts).T
    return float(np.polyfit(e, a, 1)[0])


def pass_chance(cost: float, all_epochs: np.ndarray) -> float:
    """P(a selector costing `cost` all-epochs is within BAR of all's time on 5 seeds out of
    5): all's epochs to target drawn from the measured ones, the seeds independent."""
    return float(np.mean(all_epochs >= cost / BAR)) ** SEEDS_PER_SUITE


def pass_chance_lognormal(cost: float, mu: float, sigma: float) -> float:
    """The same with all's epochs to target lognormal(mu, sigma) (fitted to the measured)."""
    return (1 - NormalDist(mu, sigma).cdf(math.log(cost / BAR))) ** SEEDS_PER_SUITE


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stopped", nargs="+", required=True)
    p.add_argument("--calibration", nargs="*", default=[])
    p.add_argument("--checks", nargs="*", default=[],
                   help="runs' metrics.json files whose checks (four an epoch near the target) to read")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    rows = load_runs(args.stopped, args.calibration)
    kinds = sorted({r["kind"] for r in rows}, key=order)
    all_epochs = np.array([r["epochs_to_target"] for r in rows if r["kind"] == "all"])
    mu, sigma = float(np.log(all_epochs).mean()), float(np.log(all_epochs).std(ddof=1))

    def of(kind: str) -> list[dict]:
        return [r for r in rows if r["kind"] == kind]

    def slopes(kind: str):  # over the runs stopped at the target (a calibration run trained past it)
        stopped = [climb_slope(r) for r in of(kind) if not r["calibration"]]
        return spread(stopped) if stopped else None

    summary = {k: {"epochs_to_target": spread([r["epochs_to_target"] for r in of(k)]),
                   "cost_epochs": {str(f): spread([r["cost_epochs"][str(f)] for r in of(k)]) for f in FIXED_COSTS},
                   "climb_slope_points_per_epoch": slopes(k)}
               for k in kinds}
    chance = {}
    for k in kinds:
        if k == "all":
            continue
        chance[k] = {}
        for f in FIXED_COSTS:
            c = float(np.mean([r["cost_epochs"][str(f)] for r in of(k)]))
            chance[k][str(f)] = {"mean_cost_epochs": c, "ratio_to_mean_all": c / float(all_epochs.mean()),
                                 "pass_5_of_5_empirical": pass_chance(c, all_epochs),
                                 "pass_5_of_5_lognormal": pass_chance_lognormal(c, mu, sigma)}
    # The cost (all-epochs) at which the lognormal chance of 5/5 is 0.8: each seed 0.8 ** (1/5).
    per_seed = 0.8 ** (1 / SEEDS_PER_SUITE)
    needed = BAR * math.exp(NormalDist(mu, sigma).inv_cdf(1 - per_seed))
    result = {"target_accuracy": TARGET, "bar": BAR, "fixed_costs": list(FIXED_COSTS),
              "all_epochs_lognormal": {"mu": mu, "sigma": sigma},
              "cost_for_5_of_5_with_chance_0.8": {"cost_epochs": needed,
                                                  "ratio_to_mean_all": needed / float(all_epochs.mean())},
              "plateau_noise": plateau_noise(rows), "check_noise": check_noise(args.checks),
              "summary": summary, "chance": chance,
              "runs": [{k: v for k, v in r.items() if k != "curve"} for r in rows]}

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "first_passage.json", result)
    text = report(result, rows, kinds)
    atomic_write_text(out / "first_passage.md", text)
    plot(rows, result, out / "first_passage.png")
    print(text)


def num(x, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def slope_cell(sl) -> str:
    return "-" if sl is None else f"{sl['mean']:.2f} ({sl['min']:.2f}-{sl['max']:.2f})"


def report(result: dict, rows: list[dict], kinds: list[str]) -> str:
    lines = [f"# First passage to {100 * TARGET:.2f}% on fmnist-long", "",
             "| kind | seed | epochs to target | cost, all-epochs, F=0 / 12 / 24 | source |", "|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (kinds.index(r["kind"]), r["seed"])):
        c = r["cost_epochs"]
        lines.append(f"| {r['kind']} | {r['seed']} | {r['epochs_to_target']:.2f} | "
                     f"{c['0']:.1f} / {c['12']:.1f} / {c['24']:.1f} | "
                     f"{'calibration (epoch ends)' if r['calibration'] else Path(r['source']).parent.name} |")
    lines += ["", "| kind | runs | epochs to target: mean, sd, CV, range | cost at F=24: mean, sd, CV "
              "| slope before the target, points/epoch |", "|---|---|---|---|---|"]
    for k in kinds:
        s, c, sl = (result["summary"][k]["epochs_to_target"], result["summary"][k]["cost_epochs"]["24"],
                    result["summary"][k]["climb_slope_points_per_epoch"])
        lines.append(f"| {k} | {s['n']} | {s['mean']:.1f}, {num(s['sd'], 1)}, {num(s['cv'], 3)}, "
                     f"{s['min']:.1f}-{s['max']:.1f} | {c['mean']:.1f}, {num(c['sd'], 2)}, {num(c['cv'], 3)} | "
                     f"{slope_cell(sl)} |")
    lines += ["", "`all` on the 100-epoch calibration runs, epochs 30-80, against its 11-epoch running mean:", "",
              "| seed | residual sd, points | running mean reaches the target at epoch | first epoch at the target "
              "| running mean's slope there, points/epoch |", "|---|---|---|---|---|"]
    for seed, n in result["plateau_noise"].items():
        lines.append(f"| {seed} | {n['residual_sd_points']:.2f} | {n['trend_crosses_target_at_epoch']} | "
                     f"{n['first_epoch_at_target']:.0f} | {n['trend_slope_points_per_epoch']:.3f} |")
    if result["check_noise"]:
        lines += ["", "Every evaluation of a run's last 10 epochs before the target (epoch ends and checks), "
                  "around a straight line:", "",
                  "| run | evaluations | residual sd, points | line's slope, points/epoch | at the target at epoch |",
                  "|---|---|---|---|---|"]
        for name, n in result["check_noise"].items():
            lines.append(f"| {name} | {n['evaluations']} | {n['residual_sd_points']:.2f} | "
                         f"{n['slope_points_per_epoch']:.3f} | {n['first_at_target_epoch']:.2f} |")
    ln = result["all_epochs_lognormal"]
    lines += ["", f"`all`'s epochs to target as lognormal: mu {ln['mu']:.3f}, sigma {ln['sigma']:.3f}.", "",
              "| selector | F | mean cost, all-epochs | / all's mean | P(5/5 within 0.50x), empirical | lognormal |",
              "|---|---|---|---|---|---|"]
    for k, by_f in result["chance"].items():
        for f, ch in by_f.items():
            lines.append(f"| {k} | {f} | {ch['mean_cost_epochs']:.1f} | {ch['ratio_to_mean_all']:.2f} | "
                         f"{ch['pass_5_of_5_empirical']:.2f} | {ch['pass_5_of_5_lognormal']:.2f} |")
    nd = result["cost_for_5_of_5_with_chance_0.8"]
    lines += ["", f"A selector passes on 5/5 seeds with chance 0.8 (lognormal) at a cost of {nd['cost_epochs']:.1f} "
              f"all-epochs, {nd['ratio_to_mean_all']:.2f}x `all`'s mean epochs to target."]
    return "\n".join(lines) + "\n"


COLORS = {"all": "tab:blue", "DQN": "tab:red", "evolved": "tab:green", "grow": "tab:orange",
          "hand schedule": "tab:purple"}


def plot(rows: list[dict], result: dict, path: Path) -> None:
    plt = pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(14.5, 4.8))
    climbs = sorted({r["kind"] for r in rows if r["kind"] not in COLORS})
    greys = {k: str(0.15 + 0.5 * i / max(len(climbs) - 1, 1)) for i, k in enumerate(climbs)}  # one grey each

    def color_of(kind: str) -> str:
        return COLORS.get(kind) or greys[kind]

    colors = COLORS
    for r in rows:
        e, a, _ = zip(*r["curve"])
        ax.plot(e, np.array(a) * 100, color=color_of(r["kind"]), lw=0.8, alpha=0.6,
                ls=":" if r["calibration"] else "-")
        ax.plot(r["epochs_to_target"], 100 * TARGET, "o", color=color_of(r["kind"]), ms=4)
    ax.axhline(100 * TARGET, color="k", lw=0.8)
    for k, c in colors.items():
        if any(r["kind"] == k for r in rows):
            ax.plot([], [], color=c, label=k)
    if any(r["kind"] not in colors for r in rows):
        ax.plot([], [], color="k", label="climbs of the grid")
    ax.plot([], [], color="tab:blue", ls=":", label="all, 100-epoch calibration")
    ax.set(xlim=(20, 75), ylim=(80, 89), xlabel="epoch", ylabel="validation accuracy, %",
           title="`all` reaches the target on a plateau, the selectors on their climb")
    ax.legend(fontsize=8, loc="lower right")
    all_epochs = np.array([r["epochs_to_target"] for r in rows if r["kind"] == "all"])
    ln = result["all_epochs_lognormal"]
    costs = np.linspace(10, 35, 200)
    ax2.plot(costs, [pass_chance_lognormal(c, ln["mu"], ln["sigma"]) for c in costs], color="k",
             label="lognormal fit of all's epochs to target")
    ax2.step(costs, [pass_chance(c, all_epochs) for c in costs], color="gray", where="post",
             label=f"the {all_epochs.size} measured")
    markers = (("24", "o"), ("12", "s"), ("0", "^"))
    for k, by_f in result["chance"].items():
        for f, m in markers:
            ax2.plot(by_f[f]["mean_cost_epochs"], by_f[f]["pass_5_of_5_lognormal"], m, color=color_of(k),
                     label=k if f == "24" else None)
    for f, m in markers:
        ax2.plot([], [], m, color="gray", mfc="none", label=f"fixed cost F = {f}")
    ax2.set(xlabel="selector's cost to target, all-epochs", ylabel="P(within 0.50x on 5/5 seeds)",
            title="the first target's time part, seed by seed (lognormal)")
    ax2.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    save_figure(fig, path)


if __name__ == "__main__":
    main()

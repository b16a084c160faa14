"""The sweep's rows and files: one row per finished run, ``OUT/results.json`` ({"meta",
"runs"}), ``OUT/results.csv`` (the scalar fields) and the figures, rewritten after every
finished run; and the rows of an earlier sweep, read back for ``--resume``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

from benchmarks.common import write_csv
from benchmarks.sweep.grid import grid_text
from benchmarks.sweep.plots import plot, plot_keep_frequency
from benchmarks.sweep.stats import fill_relative
from patchenv import checked_json
from patchenv.run import SUMMARY_FIELDS, eval_split

# Scalar per-run fields: the CSV's columns, in order (the JSON adds the per-epoch "curve").
RUN_FIELDS = ("selector", "seed", "dataset") + SUMMARY_FIELDS + (
    "speedup_vs_all", "accuracy_delta_vs_all", "target_accuracy", "time_to_target_s", "tokens_to_target",
    "flops_to_target", "speedup_to_target", "speedup_to_target_flops", "accuracy_delta_at_equal_flops")
# Configuration keys that must match for --resume to reuse earlier runs.
COMPARABLE = ("dataset", "preset", "env", "epochs", "budget", "device", "protocol", "stop_at_target",
              "horizon_epochs")
# What a sweep writes into OUT (--overwrite removes these, and nothing else).
OUTPUTS = ("results.json", "results.csv", "results.md", "accuracy_vs_time.png", "accuracy_vs_flops.png", "patch_keep_frequency.png",
           "runs", "ray")


def record(cfg: dict, selector: str, seed: int, metrics: dict) -> dict:
    """A run's row: who, where in the grid (a grid point's rows carry ``setting`` and one
    field per grid key), its summary, its per-epoch curve, and the split that curve was
    evaluated on (the runner's own decision, from its meta)."""
    where = {} if cfg.get("setting") is None else {"setting": cfg["setting"], **cfg["values"]}
    return {"selector": selector, "seed": seed, "dataset": cfg["dataset"], **where, **metrics["summary"],
            "curve": metrics["epochs"], "eval_split": metrics["meta"]["eval_split"]}


def csv_fields(cfg: dict) -> tuple:
    """RUN_FIELDS; with a grid, ``setting`` and a column per grid key after ``dataset``."""
    if not cfg.get("grid"):
        return RUN_FIELDS
    where = ("setting",) + tuple(k for k in cfg["grid"] if k not in RUN_FIELDS)
    i = RUN_FIELDS.index("dataset") + 1
    return RUN_FIELDS[:i] + where + RUN_FIELDS[i:]


def write_results(out: Path, meta: dict, runs: list[dict], cfg: dict, status: str,
                  in_progress: Optional[dict] = None) -> None:
    """results.json, results.csv and the figures, from the rows so far (their relative
    fields filled in first)."""
    fill_relative(runs, cfg["target_accuracy"])
    meta = dict(meta, status=status, in_progress=in_progress)
    checked_json.write(out / "results.json", {"meta": meta, "runs": runs})
    write_csv(out / "results.csv", runs, csv_fields(cfg))
    if runs:
        title = f"{cfg['dataset']}, preset {cfg['preset']}, {cfg['budget']} ({cfg['device']})"
        if cfg.get("grid"):
            title = f"grid {grid_text(cfg['grid'])}, {cfg['budget']} ({cfg['device']})"
        plot(runs, cfg["selectors"], out / "accuracy_vs_time.png", title)
        if any(r.get("train_flops") for r in runs):
            plot(runs, cfg["selectors"], out / "accuracy_vs_flops.png", title, x="train_flops")
        plot_keep_frequency(runs, cfg["selectors"], out / "patch_keep_frequency.png", title)


@dataclass
class Results:
    """The sweep's rows and where they go: every finished run is merged here, by either
    backend, and the files are rewritten at once."""

    out: Path
    cfg: dict
    meta: dict
    runs: list
    bar: Any = None  # a progress bar over runs (tqdm), advanced once per merged run

    def write(self, status: str, in_progress: Optional[dict] = None) -> None:
        write_results(self.out, self.meta, self.runs, self.cfg, status, in_progress)

    def add(self, point: dict, selector: str, seed: int, metrics: dict) -> None:
        """A finished run's row (at `point`), saved."""
        self.runs.append(record(point, selector, seed, metrics))
        self.write("running")
        if self.bar is not None:
            self.bar.update(1)


def load_previous(out: Path, cfg: dict, trust: bool = False) -> list[dict]:
    """The rows of OUT/results.json, for --resume; refused when it was made with another
    configuration (the keys of COMPARABLE, the grid's keys), or is damaged (its checksum,
    `patchenv.checked_json`; a file without one only if `trust`)."""
    path = out / "results.json"
    if not path.is_file():
        return []
    try:
        previous = checked_json.read(path, trust=trust)
        old_cfg = previous["meta"]["config"]
        runs = list(previous["runs"])
        if not isinstance(old_cfg, dict) or not all(isinstance(r, dict) for r in runs):
            raise TypeError("its config or rows are not JSON objects")
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"--resume: cannot read {path} ({type(e).__name__}: {e}); use another --out") from None
    diff = config_difference(old_cfg, cfg)
    if diff:
        raise ValueError(f"--resume: {path} was made with another configuration "
                         f"({', '.join(f'{k}: {a!r} then, {b!r} now' for k, (a, b) in diff.items())}); "
                         f"use another --out or run without --resume")
    return runs


def config_difference(first: dict, second: dict) -> dict:
    """{key: (first's, second's)} where two sweeps' configurations make their rows
    incomparable: the keys of COMPARABLE; the target when runs stop at it (a run stopped
    at its target depends on it); a grid's keys (a grid may gain values, whose new points
    are run and finished ones kept, but not change its keys: the rows' columns and folders
    are the keys')."""
    keys = COMPARABLE + (("target_accuracy",) if second.get("stop_at_target") else ())
    diff = {k: (first.get(k), second.get(k)) for k in keys if first.get(k) != second.get(k)}
    first_keys, second_keys = list(first.get("grid") or {}), list(second.get("grid") or {})
    if first_keys != second_keys:
        diff["grid keys"] = (first_keys, second_keys)
    return diff


def fill_eval_split(runs: list[dict], cfg: dict, points: list[dict]) -> None:
    """Rows read back from a results.json written before rows carried ``eval_split`` get
    the split their point's settings give, decided by the runner's own rule
    (`patchenv.run.eval_split`, which reads only the env's val_fraction)."""
    by_setting = {p.get("setting"): p for p in points}
    for r in runs:
        if "eval_split" not in r:
            point = by_setting.get(r.get("setting"), cfg)
            env = SimpleNamespace(config=SimpleNamespace(val_fraction=point["env"].get("val_fraction") or 0.0))
            r["eval_split"] = eval_split(env, point["protocol"])

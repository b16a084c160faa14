"""Every write of ``python -m benchmarks.compare_selectors`` (local backend) can fail: its
results files and figures, and each run's own files. The sweep ends with one line naming
the file and the OS's reason, exit status 1, what was written before intact, and the
command the line names (``--resume`` once results.json exists) completes the sweep with
the results of one that never failed."""
import csv
import errno
import json

import pytest

from compare_cli import compare
from write_faults import TEMP, DiskFull, intact, one_line

PROG = "python -m benchmarks.compare_selectors"
FAST = ("--batch-size", "64")  # 32 steps per run
ONE = "all"  # one run: every write of a sweep, at the least cost (the interleaved test has two)
# Wall-clock fields and those computed from them.
CLOCK = {"train_time_s", "epoch_time_s", "env_step_time_s", "agent_overhead_s", "images_per_s",
         "agent_overhead_share", "speedup_vs_all", "time_vs_all", "time_to_target_s", "speedup_to_target"}


def without_clock(obj):
    if isinstance(obj, dict):
        return {k: without_clock(v) for k, v in obj.items() if k not in CLOCK}
    if isinstance(obj, list):
        return [without_clock(v) for v in obj]
    return obj


def results(out) -> dict:
    """What a sweep produced, wall-clock fields aside."""
    saved = json.loads((out / "results.json").read_text())
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    figures = {name: (out / name).read_bytes()[:8] for name in ("accuracy_vs_time.png", "accuracy_vs_flops.png",
                                                                 "patch_keep_frequency.png")}
    return {"status": saved["meta"]["status"], "runs": without_clock(saved["runs"]), "csv": without_clock(rows),
            "figures": figures, "table": (out / "results.md").read_text().splitlines()[0]}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "sweep"
    assert compare(out, *FAST, selectors=ONE) == 0
    return out


# name, how, nth write to it (counted from the sweep's start). A sweep writes results.json
# at its start, after each run and once complete, results.csv and the figures after each
# run, results.md at its end; each run its own checkpoint and metrics.json.
POINTS = {
    "lock": (".lock", "open", 1),
    "results.json, start": ("results.json", "replace", 1),
    "a run's checkpoint": ("env.pt", "replace", 1),
    "a run's metrics.json": ("metrics.json", "replace", 1),
    "results.json, after a run": ("results.json", "replace", 2),
    "results.csv": ("results.csv", "replace", 2),
    "accuracy figure": ("accuracy_vs_time.png", "replace", 1),
    "flops figure": ("accuracy_vs_flops.png", "replace", 1),
    "keep-frequency figure": ("patch_keep_frequency.png", "replace", 1),
    "results.json, complete": ("results.json", "replace", 3),
    "results.md": ("results.md", "replace", 1),
}


@pytest.mark.parametrize("point", list(POINTS))
def test_a_failed_write_is_one_line_and_the_sweep_continues_to_the_same_results(tmp_path, monkeypatch, capsys,
                                                                                reference, point):
    name, how, nth = POINTS[point]
    out = tmp_path / "sweep"
    disk = DiskFull(monkeypatch, name, nth, how, root=out, err=errno.ENOSPC)
    assert compare(out, *FAST, selectors=ONE) == 1
    line = one_line(capsys.readouterr().err)
    assert disk.path is not None and disk.path.is_relative_to(out)
    assert line.startswith(f"{PROG}: error: cannot write {disk.path}: {disk.reason} (once it can be written, ")
    intact(out, disk.before)
    monkeypatch.undo()
    if (out / "results.json").is_file():
        assert line.endswith("continue with the same command plus --resume)")
        assert compare(out, *FAST, "--resume", selectors=ONE) == 0
    else:
        assert line.endswith("continue with the same command)")
        assert compare(out, *FAST, selectors=ONE) == 0
    assert results(out) == results(reference)


def test_an_interleaved_sweep_continues_after_a_failed_checkpoint(tmp_path, monkeypatch, capsys):
    """Interleaved turns: a run waits in its checkpoint between turns; the second turn's
    checkpoint fails, --resume continues every run where it stood."""
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    args = (*FAST, "--schedule", "interleaved")
    assert compare(straight, *args, epochs=2) == 0
    disk = DiskFull(monkeypatch, "progress.json", 3, "replace", root=cut)
    assert compare(cut, *args, epochs=2) == 1
    assert one_line(capsys.readouterr().err).startswith(f"{PROG}: error: cannot write {disk.path}: {disk.reason}")
    intact(cut, disk.before)
    monkeypatch.undo()
    assert compare(cut, *args, "--resume", epochs=2) == 0
    assert results(cut) == results(straight)


def test_a_population_sweep_continues_after_a_failed_checkpoint(tmp_path, monkeypatch, capsys):
    """--population: each run of a selector's seeds checkpoints as a member of the
    population; a failed checkpoint ends the sweep, and --resume loads every member's
    checkpoint back into a population and completes it with the same results."""
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    args = (*FAST, "--population", "--seeds", "0,1")
    assert compare(straight, *args, selectors=ONE, epochs=2) == 0
    disk = DiskFull(monkeypatch, "progress.json", 3, "replace", root=cut)
    assert compare(cut, *args, selectors=ONE, epochs=2) == 1
    assert one_line(capsys.readouterr().err).startswith(f"{PROG}: error: cannot write {disk.path}: {disk.reason}")
    # The other member finishes its own step and writes its own files (atomically): only
    # the failed file's run stands at its previous checkpoint.
    assert not [p for p in cut.rglob("*") if TEMP in p.name]
    monkeypatch.undo()
    assert compare(cut, *args, "--resume", selectors=ONE, epochs=2) == 0
    assert results(cut) == results(straight)

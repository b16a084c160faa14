"""Every write of `patchenv train` can fail (a full disk, permission denied, a read-only
folder): the command ends with one line naming the file and the OS's reason, exit status
1, what was written before intact, and what the line says to run next (``--resume``, or
the same command when nothing was saved yet) completes the run with the numbers of a run
that never failed."""
import csv
import errno
import functools
import json
import os
import subprocess
import threading

import pytest

from patchenv import cli
from patchenv.run import loop as run_loop
from patchenv.run.interrupt import GracefulInterrupt
from write_faults import DiskFull, files, intact, one_line

# 2048 synthetic images / batch 64 = 32 steps per epoch with the tiny ViT; two epochs.
BASE = ["train", "--dataset", "synthetic", "--preset", "tiny", "--batch-size", "64", "--device", "cpu",
        "--no-progress", "--protocol", "paper", "--agent", "random:k=16", "--epochs", "2"]
# Wall-clock fields: the only ones a run that failed and was continued may differ in.
CLOCK = {"train_time_s", "epoch_time_s", "env_step_time_s", "agent_overhead_s", "images_per_s",
         "agent_overhead_share"}


def command(out):
    return [*BASE, "--out", str(out), "--log-dir", str(out / "logs")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The run that never failed."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert cli.main(command(out)) == 0
    return out


def csv_rows(path, drop=()):
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(f)]


def results(out) -> dict:
    """What a run produced, wall-clock fields aside: its records, summary, logs and agent."""
    m = json.loads((out / "metrics.json").read_text())
    return {"status": m["meta"]["status"], "partial": m["partial"],
            "epochs": [{k: v for k, v in row.items() if k not in CLOCK} for row in m["epochs"]],
            "summary": {k: v for k, v in m["summary"].items() if k not in CLOCK},
            "steps.csv": csv_rows(out / "logs" / "steps.csv"),
            "epochs.csv": csv_rows(out / "logs" / "epochs.csv", drop=CLOCK),
            "agent": without_clock(json.loads((out / "agent.json").read_text()))}


def without_clock(obj):
    """`obj` without its wall-clock fields (and the checksum, which covers them)."""
    if isinstance(obj, dict):
        return {k: without_clock(v) for k, v in obj.items() if k not in CLOCK | {"overhead_time_s", "sha256"}}
    return obj


def interrupt_after(monkeypatch, steps):
    """SIGTERM (or Ctrl-C) after `steps` env steps: the runner stops there and checkpoints."""
    monkeypatch.setattr(run_loop, "GracefulInterrupt", functools.partial(GracefulInterrupt, after_steps=steps))


# name, how, nth write to it (counted from the run's start), errno; steps before a SIGTERM
# (None: no stop). Writes per 2-epoch run: checkpoint at each epoch end (folder, env.pt,
# agent.json, rng.pt, then progress.json), metrics.json after each checkpoint and once
# complete, the final agent.json; steps.csv a header and a row per step, epochs.csv a
# header, a row per epoch and a final row; TensorBoard's events at each flush.
POINTS = {
    "lock": (".lock", "open", 1, errno.EACCES, None),
    "log folder": ("logs", "mkdir", 1, errno.EROFS, None),
    "steps.csv, epoch 2": ("steps.csv", "append", 40, errno.ENOSPC, None),
    "epochs.csv, epoch 1": ("epochs.csv", "append", 2, errno.ENOSPC, None),
    "epochs.csv, final row": ("epochs.csv", "append", 4, errno.ENOSPC, None),
    "tensorboard events": ("events.out.tfevents*", "append", 2, errno.ENOSPC, None),
    "checkpoint folder": ("step-000000064", "mkdir", 1, errno.ENOSPC, None),
    "env.pt": ("env.pt", "replace", 2, errno.ENOSPC, None),
    "checkpoint agent": ("agent.json", "replace", 2, errno.ENOSPC, None),
    "rng.pt": ("rng.pt", "replace", 2, errno.EACCES, None),
    "progress.json, first": ("progress.json", "replace", 1, errno.ENOSPC, None),
    "progress.json, second": ("progress.json", "replace", 2, errno.ENOSPC, None),
    "metrics.json, epoch 1": ("metrics.json", "replace", 1, errno.EROFS, None),
    "metrics.json, complete": ("metrics.json", "replace", 3, errno.ENOSPC, None),
    "final agent": ("agent.json", "replace", 3, errno.ENOSPC, None),
    "SIGTERM checkpoint": ("progress.json", "replace", 2, errno.ENOSPC, 40),
    "SIGTERM metrics.json": ("metrics.json", "replace", 2, errno.ENOSPC, 40),
}


def fail_then_continue(tmp_path, monkeypatch, capsys, fault) -> list:
    """Run the command with `fault` (a DiskFull maker), check the failure, then run what the
    error line says, the disk writable again; returns the exit statuses."""
    out = tmp_path / "run"
    disk = fault(out)
    status = cli.main(command(out))
    line = one_line(capsys.readouterr().err)
    assert disk.path is not None, "the write never happened"
    assert status == 1
    assert line.startswith(f"patchenv: error: cannot write {disk.path}: {disk.reason} (")
    intact(out, disk.before)
    monkeypatch.undo()
    if (out / "progress.json").is_file():
        assert line.endswith(f"continue with: patchenv train --resume --out {out})")
        return [status, cli.main(["train", "--resume", "--out", str(out), "--no-progress"])]
    assert line.endswith("nothing was saved yet; once it can be written, run the same command again)")
    return [status, cli.main(command(out))]


@pytest.mark.parametrize("point", list(POINTS))
def test_a_failed_write_is_one_line_and_the_run_continues_to_the_same_results(tmp_path, monkeypatch, capsys,
                                                                              reference, point):
    name, how, nth, err, stop_after = POINTS[point]
    if stop_after is not None:
        interrupt_after(monkeypatch, stop_after)
    # A thread's uncaught error is printed by threading.excepthook (a traceback): TensorBoard's
    # writer thread meets the full disk first, and its error must reach the user only once,
    # as the run's one line.
    thread_reports = []
    monkeypatch.setattr(threading, "excepthook", thread_reports.append)
    statuses = fail_then_continue(tmp_path, monkeypatch, capsys,
                                  lambda out: DiskFull(monkeypatch, name, nth, how, root=out, err=err))
    assert statuses == [1, 0] and thread_reports == []
    assert results(tmp_path / "run") == results(reference)


@pytest.mark.parametrize("name,how,nth", [("steps.csv", "replace", 1), ("progress.json", "replace", 1),
                                          ("metrics.json", "replace", 1)])
def test_a_resume_whose_write_fails_can_be_resumed_again(tmp_path, monkeypatch, capsys, reference, name, how, nth):
    """--resume writes too: the logs cut back to the checkpoint, the next checkpoint, the
    metrics; a failure there leaves the stopped run as it was, and --resume again completes it."""
    out = tmp_path / "run"
    interrupt_after(monkeypatch, 40)
    assert cli.main(command(out)) == 130
    monkeypatch.undo()
    capsys.readouterr()
    disk = DiskFull(monkeypatch, name, nth, how, root=out)
    assert cli.main(["train", "--resume", "--out", str(out), "--no-progress"]) == 1
    line = one_line(capsys.readouterr().err)
    assert line == (f"patchenv: error: cannot write {disk.path}: {disk.reason} (once it can be written, continue "
                    f"with: patchenv train --resume --out {out})")
    intact(out, disk.before)
    monkeypatch.undo()
    assert cli.main(["train", "--resume", "--out", str(out), "--no-progress"]) == 0
    assert results(out) == results(reference)


def test_an_unchanged_folder_after_a_failure_at_the_start(tmp_path, monkeypatch, capsys):
    """A run that cannot write its lock leaves no folder behind, and an --out holding an
    earlier run keeps every byte of it."""
    disk = DiskFull(monkeypatch, ".lock", 1, "open", root=tmp_path / "run", err=errno.EROFS)
    assert cli.main(command(tmp_path / "run")) == 1
    assert "Read-only file system" in one_line(capsys.readouterr().err)
    assert disk.path == tmp_path / "run" / ".lock" and not (tmp_path / "run").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of its own (8 MiB), where the machine lets the tests mount one (root, Linux)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_real_full_disk_and_a_read_only_one(small_disk, monkeypatch, capsys, reference):
    """The kernel's own refusals, no monkeypatched write: a run stopped at step 40, resumed
    on a disk with less room left than a checkpoint takes (ENOSPC), then on the disk
    remounted read-only (EROFS), then once it is writable again."""
    out = small_disk / "run"
    interrupt_after(monkeypatch, 40)
    assert cli.main(command(out)) == 130
    monkeypatch.undo()
    capsys.readouterr()
    checkpoint = max((out / "checkpoints").iterdir())
    room = os.statvfs(small_disk)
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (room.f_bavail * room.f_frsize - (checkpoint / "env.pt").stat().st_size // 2))
    before = files(out)
    resume = ["train", "--resume", "--out", str(out), "--no-progress"]
    assert cli.main(resume) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"patchenv: error: cannot write {out}/") and ": [Errno 28] No space left on device (" in line
    intact(out, before)
    filler.unlink()

    before = files(out)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        assert cli.main(resume) == 1
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"patchenv: error: cannot write {out / '.lock'}: [Errno 30] Read-only file system (")
    intact(out, before)

    assert cli.main(resume) == 0
    assert results(out) == results(reference)

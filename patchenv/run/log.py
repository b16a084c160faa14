"""Per-step and per-epoch logs of a training run: CSV always, TensorBoard when installed.

``RunLog(log_dir)`` writes ``steps.csv`` (one row per env step: reward, loss, accuracy,
patches kept, tokens and the agent's own ``stats()``, e.g. AgentViT's epsilon) and
``epochs.csv`` (one row per evaluation, ``record`` "epoch", and at the end one row
``record`` "final" with the test accuracies the run trains for), and the same scalars to TensorBoard event files
in ``log_dir`` (``tensorboard --logdir DIR``) when the optional ``tensorboard`` package
is installed (``pip install -e ".[log]"``). A resumed run first drops the rows past its
checkpoint, so the logs never hold a step twice; a run that starts afresh starts them over
(an earlier attempt in the same folder, e.g. one stopped by a full disk before its first
checkpoint, leaves no rows behind).
"""
from __future__ import annotations

import csv
import math
import sys
import threading
import weakref
from pathlib import Path
from typing import Callable, Optional

from patchenv.atomic import WriteError, atomic_write, writing

STEP_FIELDS = ("global_step", "epoch", "reward", "loss", "accuracy", "kept", "tokens", "padding_tokens", "flops",
               "loss_term", "patch_term")
# What the final record holds: the summary's test numbers (`patchenv.run.records.SUMMARY_FIELDS`).
FINAL_FIELDS = ("test_accuracy", "test_loss", "test_accuracy_masked", "test_mean_patches_kept_masked",
                "test_accuracy_random_masks")


class RunLog:
    def __init__(self, log_dir, resume_from_step: Optional[int] = None):
        self.dir = Path(log_dir)
        with writing(self.dir):
            self.dir.mkdir(parents=True, exist_ok=True)
        for name in ("steps.csv", "epochs.csv"):
            if resume_from_step is None:
                with writing(self.dir / name):
                    (self.dir / name).unlink(missing_ok=True)
            else:
                _truncate_csv(self.dir / name, resume_from_step)
        self._files: dict[str, tuple] = {}
        self._writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # optional dependency: the CSV files carry the same numbers
            print(f"--log-dir: tensorboard is not installed (pip install tensorboard); writing CSV only to "
                  f"{self.dir}", file=sys.stderr)
        else:
            # purge_step hides the events a stopped run wrote past its checkpoint: those of
            # steps after it (the checkpoint's own step was logged before it was saved); a
            # fresh start hides every earlier event.
            threads = set(threading.enumerate())
            self._writer = self._events(lambda: SummaryWriter(
                str(self.dir), purge_step=0 if resume_from_step is None else resume_from_step + 1))
            _quiet(set(threading.enumerate()) - threads)

    def step(self, info: dict, reward: float, agent_stats: dict) -> None:
        row = {"global_step": info["global_step"], "epoch": info["epoch"], "reward": reward,
               **{k: info[k] for k in STEP_FIELDS[3:] if k in info}}
        row.update({f"agent/{k}": v for k, v in agent_stats.items()})
        self._append("steps.csv", row)
        if self._writer is not None:
            for key, value in row.items():
                if key not in ("global_step", "epoch") and _is_number(value):
                    self._events(lambda: self._writer.add_scalar(key if "/" in key else f"train/{key}", value,
                                                                 row["global_step"]))

    def epoch(self, record: dict) -> None:
        # The final record's columns exist from the first row on (empty in epoch rows).
        self._append("epochs.csv", {"record": "epoch", **record, **{k: None for k in FINAL_FIELDS if k not in record}})
        self._scalars("epoch", record, record["global_step"])

    def final(self, summary: dict, global_step: int) -> None:
        """The run's result, once at its end: the test accuracies (all patches, the agent's
        masks, random masks) and loss, as a last ``record: final`` row and ``final/*`` scalars."""
        row = {k: summary.get(k) for k in FINAL_FIELDS}
        self._append("epochs.csv", {"record": "final", "epoch": summary.get("epochs"), "global_step": global_step,
                                    **row})
        self._scalars("final", row, global_step)

    def _scalars(self, group: str, values: dict, global_step: int) -> None:
        if self._writer is not None:
            for key, value in values.items():
                if key not in ("global_step", "epoch") and _is_number(value):
                    self._events(lambda: self._writer.add_scalar(f"{group}/{key}", value, global_step))
        self.flush()

    def flush(self) -> None:
        for name, (handle, _) in self._files.items():
            with writing(self.dir / name):
                handle.flush()
        if self._writer is not None:
            self._events(self._writer.flush)

    def close(self) -> None:
        """Close every file; all are closed even when one fails, the first failure raised."""
        failed = None
        for name, (handle, _) in self._files.items():
            try:
                with writing(self.dir / name):
                    handle.close()  # flushes what is buffered
            except WriteError as e:
                failed = failed or e
        self._files.clear()
        if self._writer is not None:
            writer, self._writer = self._writer, None
            try:
                self._events(writer.close)
            except WriteError as e:
                failed = failed or e
        if failed is not None:
            raise failed

    def _events(self, call: Callable):
        """A TensorBoard call; an OSError of its writer thread, which the next call raises,
        as a WriteError naming the event file."""
        try:
            return call()
        except OSError as e:
            raise WriteError(e.filename or self.dir, e) from e

    def _append(self, name: str, row: dict) -> None:
        path = self.dir / name
        with writing(path):
            if name not in self._files:
                fields = _header(path) or list(row)
                handle = open(path, "a", newline="")
                writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
                self._files[name] = (handle, writer)
                if path.stat().st_size == 0:
                    writer.writeheader()
            self._files[name][1].writerow({k: ("" if v is None else v) for k, v in row.items()})


# TensorBoard's writer threads: an OSError there is kept by TensorBoard and raised again by
# the next call in the run's thread (`RunLog._events`, one line); the thread's own report
# of it, a traceback, is not printed.
_QUIET_THREADS: "weakref.WeakSet[threading.Thread]" = weakref.WeakSet()
_print_thread_error = threading.excepthook


def _thread_error(args) -> None:
    if not (args.thread in _QUIET_THREADS and issubclass(args.exc_type, OSError)):
        _print_thread_error(args)


def _quiet(threads) -> None:
    """Silence `threads`' OSErrors (installed on first use, over whatever hook is in place)."""
    global _print_thread_error
    _QUIET_THREADS.update(threads)
    if threading.excepthook is not _thread_error:
        _print_thread_error, threading.excepthook = threading.excepthook, _thread_error


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _header(path: Path) -> Optional[list]:
    if not path.is_file() or path.stat().st_size == 0:
        return None
    with open(path, newline="") as f:
        return next(csv.reader(f), None)


def _truncate_csv(path: Path, last_step: int) -> None:
    """Keep the header and the rows whose global_step is at most `last_step`, but no final
    record: a run resumed after it (its completion failed to be written) writes it again."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    col = rows[0].index("global_step") if "global_step" in rows[0] else None
    kind = rows[0].index("record") if "record" in rows[0] else None
    keep = [rows[0]] + [r for r in rows[1:] if (col is None or (r[col] and float(r[col]) <= last_step))
                        and (kind is None or r[kind] != "final")]
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            csv.writer(f, lineterminator="\n").writerows(keep)

    atomic_write(path, write)

"""SIGTERM is a stop request like Ctrl-C: a real signal to a real `patchenv train` process
leaves a checkpoint, exit status 143 and the command that resumes it."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from patchenv.run.interrupt import GracefulInterrupt

ROOT = Path(__file__).resolve().parents[2]
TRAIN = [sys.executable, "-m", "patchenv.cli", "train", "--dataset", "synthetic", "--preset", "tiny",
         "--batch-size", "64", "--device", "cpu", "--no-progress", "--protocol", "paper", "--agent", "random:k=32"]


def test_the_first_signal_asks_the_second_stops_and_the_status_says_which():
    before = signal.getsignal(signal.SIGTERM)  # another library's (Ray installs one) or the default
    with GracefulInterrupt() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signal == signal.SIGTERM and stop.exit_status == 143
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            raise AssertionError("a second SIGTERM should stop at once")
        except KeyboardInterrupt:
            pass
    assert signal.getsignal(signal.SIGTERM) is before  # the handlers are put back
    assert GracefulInterrupt(after_steps=1).exit_status == 130  # a simulated stop reads as Ctrl-C


def test_sigterm_checkpoints_a_training_run_which_then_resumes(tmp_path):
    out = tmp_path / "run"
    child = subprocess.Popen([*TRAIN, "--epochs", "200", "--out", str(out)], cwd=ROOT, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not (out / "progress.json").exists():  # the first epoch's checkpoint is on disk
        assert child.poll() is None and time.monotonic() < deadline, child.communicate()
        time.sleep(0.2)
    child.send_signal(signal.SIGTERM)
    stdout, stderr = child.communicate(timeout=120)
    assert child.returncode == 143, stderr
    assert "SIGTERM: stopping after this step" in stderr and f"patchenv train --resume --out {out}" in stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["meta"]["status"] == "interrupted" and metrics["meta"]["exit_status"] == 143
    done = len(metrics["epochs"])
    assert 1 <= done < 200
    resumed = subprocess.run([*TRAIN[:3], "train", "--resume", "--epochs", str(done + 1), "--out", str(out),
                              "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["meta"]["status"] == "complete" and [r["epoch"] for r in metrics["epochs"]][-1] == done + 1

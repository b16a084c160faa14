"""`patchenv train`: a tiny epoch, its files, seeds, clear errors, interruption + --resume,
and the same per-epoch numbers as compare_selectors for the same agent, seed and preset."""
import csv
import functools
import json

import pytest

import agents
from benchmarks import compare_selectors
from patchenv import checked_json, cli
from patchenv.run import loop as run_loop
from patchenv.run.interrupt import GracefulInterrupt

# 2048 synthetic images / batch 64 = 32 steps per epoch with the tiny ViT.
# --protocol paper: no validation split, so every epoch has the whole 2048 training images.
BASE = ["train", "--dataset", "synthetic", "--preset", "tiny", "--batch-size", "64", "--device", "cpu",
        "--no-progress", "--protocol", "paper"]
TIMES = ("train_time_s", "epoch_time_s", "env_step_time_s", "agent_overhead_s")


def run(tmp_path, *extra, name="run"):
    return cli.main([*BASE, "--out", str(tmp_path / name), *extra])


def metrics(tmp_path, name="run"):
    return json.loads((tmp_path / name / "metrics.json").read_text())


def comparable(rows):
    return [{k: v for k, v in row.items() if k not in TIMES} for row in rows]


def interrupt_after(monkeypatch, steps):
    """The runner's Ctrl-C handler, pressed after `steps` env steps (a step boundary)."""
    monkeypatch.setattr(run_loop, "GracefulInterrupt", functools.partial(GracefulInterrupt, after_steps=steps))


def test_one_tiny_epoch_writes_metrics_and_agent(tmp_path, capsys):
    assert run(tmp_path, "--agent", "all", "--epochs", "1") == 0
    out = capsys.readouterr().out
    assert "epoch   1/1" in out and "test acc" in out and "kept 64.0/64" in out and "reward" in out
    m = metrics(tmp_path)
    meta = m["meta"]
    assert meta["status"] == "complete" and m["partial"] is None
    for key in ("date", "versions", "git_commit", "config", "status"):
        assert key in meta
    assert meta["config"]["agent"] == "all" and meta["versions"]["torch"]
    (row,) = m["epochs"]
    assert row["epoch"] == 1 and row["global_step"] == 32
    assert row["mean_patches_kept"] == 64.0 and 0.0 <= row["test_accuracy"] <= 1.0
    for key in ("train_loss", "test_loss", "train_time_s", "env_step_time_s"):
        assert row[key] > 0
    # the default reward with every patch kept: loss term L(ref)/L(t) plus 20 * -(64-30)/34... by hand
    assert row["mean_reward"] < -10
    # the end says what the run was for and where the files are
    assert f"test accuracy {100 * m['summary']['test_accuracy']:.2f}% with every patch;" in out
    run_dir = tmp_path / "run"
    assert f"results: {run_dir / 'metrics.json'}, {run_dir / 'progress.json'}, {run_dir / 'agent.json'}" in out
    assert m["summary"]["steps"] == 32 and m["summary"]["mean_patches_kept"] == 64.0
    saved = agents.load(tmp_path / "run" / "agent.json")
    assert saved.name == "all"
    progress = json.loads((tmp_path / "run" / "progress.json").read_text())
    assert (tmp_path / "run" / progress["checkpoint"] / "env.pt").exists()


def test_random_k16_seeded_run_is_reproducible_and_seed_reaches_the_agent(tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        assert run(tmp_path, "--agent", "random:k=16", "--epochs", "1", "--seed", str(seed), name=name) == 0
    a, b, c = (metrics(tmp_path, n) for n in "abc")
    assert a["epochs"][0]["mean_patches_kept"] == 16.0
    assert comparable(a["epochs"]) == comparable(b["epochs"])
    assert comparable(a["epochs"]) != comparable(c["epochs"])
    # the agent itself got the seed: same ViT seed, another agent seed -> other masks
    r3 = agents.load(tmp_path / "a" / "agent.json")
    assert r3.seed == 3 and r3.k == 16


def test_agent_arg_is_the_same_as_a_spec(tmp_path):
    assert run(tmp_path, "--agent", "random", "--agent-arg", "k=16", "--epochs", "1", name="x") == 0
    assert run(tmp_path, "--agent", "random:k=16", "--epochs", "1", name="y") == 0
    assert comparable(metrics(tmp_path, "x")["epochs"]) == comparable(metrics(tmp_path, "y")["epochs"])


def test_errors_name_the_choices_with_the_subcommand_usage(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        run(tmp_path, "--agent", "no_such_agent")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "unknown agent 'no_such_agent'" in err and "agentvit" in err and "ppo" in err
    assert "usage: patchenv train" in err
    with pytest.raises(SystemExit):
        cli.main(["train", "--agent", "all", "--dataset", "no_such_data", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert "no_such_data" in err and "digits" in err
    with pytest.raises(SystemExit):
        run(tmp_path, "--agent", "random:k=0")
    assert "k must be an integer in [1, N]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run(tmp_path, "--agent", "random:k=1000")
    assert "outside [1, 64]" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing was written


def test_missing_dataset_says_download(tmp_path, capsys):
    code = cli.main(["train", "--dataset", "cifar10", "--data-root", str(tmp_path / "empty"),
                     "--out", str(tmp_path / "x"), "--no-progress"])
    assert code == 1 and "download" in capsys.readouterr().err


def test_version_and_agent_list(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and "patchenv" in capsys.readouterr().out
    assert cli.main(["agents"]) == 0
    assert set(capsys.readouterr().out.split()) == set(agents.available())


def test_resume_needs_a_run_and_a_run_is_never_overwritten_silently(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run(tmp_path, "--resume")
    assert "nothing to resume" in capsys.readouterr().err
    assert run(tmp_path, "--agent", "all", "--epochs", "1") == 0
    with pytest.raises(SystemExit):
        run(tmp_path, "--agent", "all", "--epochs", "1")
    assert "--resume" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run(tmp_path, "--resume", "--agent", "random")  # a resumed run keeps its settings
    assert "cannot change" in capsys.readouterr().err
    before = (tmp_path / "run" / "metrics.json").read_text()
    with pytest.raises(SystemExit):  # a mistyped agent with --overwrite costs nothing
        run(tmp_path, "--overwrite", "--agent", "rnadom")
    assert (tmp_path / "run" / "metrics.json").read_text() == before


def test_agentvit_interrupted_then_resumed_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    agent = ["--agent", "agentvit:frequency=4"]
    assert run(tmp_path, *agent, "--epochs", "2", name="straight") == 0
    interrupt_after(monkeypatch, 40)  # epoch 2, step 8
    assert run(tmp_path, *agent, "--epochs", "2", name="cut") == 130
    m = metrics(tmp_path, "cut")
    assert m["meta"]["status"] == "interrupted" and len(m["epochs"]) == 1  # partial results are on disk
    assert m["partial"]["steps"] == 8
    assert (tmp_path / "cut" / "checkpoints" / "step-000000040" / "agent.pt").exists()

    monkeypatch.setattr(run_loop, "GracefulInterrupt", GracefulInterrupt)
    assert cli.main(["train", "--resume", "--out", str(tmp_path / "cut"), "--no-progress"]) == 0
    resumed, straight = metrics(tmp_path, "cut"), metrics(tmp_path, "straight")
    assert resumed["meta"]["status"] == "complete"
    assert comparable(resumed["epochs"]) == comparable(straight["epochs"])  # bit-identical on CPU
    assert (tmp_path / "cut" / "agent.pt").exists()


def test_ctrl_c_stops_ppo_after_the_step_and_resume_extends_the_run(tmp_path, monkeypatch):
    interrupt_after(monkeypatch, 5)
    assert run(tmp_path, "--agent", "ppo", "--epochs", "1") == 130
    m = metrics(tmp_path)
    assert m["meta"]["status"] == "interrupted" and m["partial"]["steps"] == 5
    monkeypatch.setattr(run_loop, "GracefulInterrupt", GracefulInterrupt)
    assert run(tmp_path, "--resume", "--epochs", "2") == 0  # a new total with --epochs
    m = metrics(tmp_path)
    assert m["meta"]["status"] == "complete" and [row["global_step"] for row in m["epochs"]] == [32, 64]
    assert (tmp_path / "run" / "agent.zip").exists()


def test_log_dir_writes_one_row_per_step_and_per_epoch(tmp_path):
    logs = tmp_path / "logs"
    assert run(tmp_path, "--agent", "agentvit:frequency=4", "--epochs", "1", "--log-dir", str(logs)) == 0
    with open(logs / "steps.csv", newline="") as f:
        steps = list(csv.DictReader(f))
    assert [int(r["global_step"]) for r in steps] == list(range(1, 33))
    assert {"reward", "loss", "kept", "tokens", "agent/epsilon"} <= set(steps[0])
    m = metrics(tmp_path)
    mean_reward = sum(float(r["reward"]) for r in steps) / len(steps)
    assert m["epochs"][0]["mean_reward"] == pytest.approx(mean_reward)
    with open(logs / "epochs.csv", newline="") as f:
        epoch, final = list(csv.DictReader(f))
    assert (epoch["record"], final["record"]) == ("epoch", "final")
    assert float(epoch["test_accuracy"]) == pytest.approx(m["epochs"][0]["test_accuracy"])
    for key in ("test_accuracy", "test_accuracy_masked", "test_accuracy_random_masks"):  # the run's result
        assert float(final[key]) == pytest.approx(m["summary"][key])
    pytest.importorskip("tensorboard")  # the test extra installs it
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logs))
    events.Reload()
    rewards = [e.value for e in events.Scalars("train/reward")]
    assert rewards == pytest.approx([float(r["reward"]) for r in steps])
    assert [e.step for e in events.Scalars("agent/epsilon")] == list(range(1, 33))
    assert [(e.step, e.value) for e in events.Scalars("final/test_accuracy_masked")] == [
        (32, pytest.approx(m["summary"]["test_accuracy_masked"]))]


def test_a_resume_refuses_each_changed_setting_by_name_and_says_what_may_change(tmp_path, capsys):
    assert run(tmp_path, "--agent", "random:k=32", "--epochs", "1", "--log-dir", str(tmp_path / "a")) == 0
    with pytest.raises(SystemExit):
        run(tmp_path, "--resume", "--lr", "0.1", "--seed", "3", "--epochs", "2")
    err = capsys.readouterr().err
    assert "cannot change --seed 3 (saved: 0); --lr 0.1 (saved: 0.001)" in err.strip().splitlines()[-1]
    assert run(tmp_path, "--resume", "--lr", "0.001", "--epochs", "2", "--log-dir", str(tmp_path / "b")) == 0
    out = capsys.readouterr().out
    assert "the epoch budget changes from 1 to 2" in out
    assert f"logging moves from {tmp_path / 'a'} to {tmp_path / 'b'}" in out
    assert (tmp_path / "b" / "steps.csv").is_file()


def test_a_resumed_run_logs_every_step_exactly_once(tmp_path, monkeypatch, capsys):
    """Stopped after epoch 1 and resumed without --log-dir: logging continues in the run's
    saved log folder, and TensorBoard and steps.csv hold each of the 64 steps once, the
    checkpoint's own step (32) included."""
    logs = tmp_path / "logs"
    interrupt_after(monkeypatch, 40)  # a Ctrl-C inside epoch 2: the checkpoint is epoch 1's end
    assert run(tmp_path, "--agent", "random:k=32", "--epochs", "2", "--log-dir", str(logs)) == 130
    monkeypatch.setattr(run_loop, "GracefulInterrupt", GracefulInterrupt)
    # no --log-dir: the run's saved log folder is where logging continues
    assert cli.main(["train", "--resume", "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    with open(logs / "steps.csv", newline="") as f:
        assert [int(r["global_step"]) for r in csv.DictReader(f)] == list(range(1, 65))
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logs))
    events.Reload()
    assert [e.step for e in events.Scalars("train/reward")] == list(range(1, 65))
    assert [e.step for e in events.Scalars("epoch/test_accuracy")] == [32, 64]


def test_cli_and_compare_selectors_give_the_same_epochs(tmp_path):
    assert run(tmp_path, "--agent", "random:k=24", "--epochs", "1", "--seed", "5", "--preset", "tiny",
               name="cli") == 0
    assert compare_selectors.main(["--dataset", "synthetic", "--preset", "tiny", "--batch-size", "64",
                                   "--device", "cpu", "--protocol", "paper",
                                   "--selectors", "all,random:k=24", "--seeds", "5",
                                   "--epochs", "1", "--out", str(tmp_path / "cmp"), "--no-progress"]) == 0
    runs = json.loads((tmp_path / "cmp" / "results.json").read_text())["runs"]
    curve = next(r["curve"] for r in runs if r["selector"] == "random:k=24")
    assert comparable(curve) == comparable(metrics(tmp_path, "cli")["epochs"])


def test_help_lists_the_seed_readme_hyperparameters(capsys):
    """The seed README's ViT and reward settings are flags of `patchenv train` (the agent's
    go as agentvit:key=value); the README's table maps each name."""
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--alpha", "--n-patch-desired", "--patch-size", "--dim", "--depth", "--heads", "--mlp-dim", "--lr"):
        assert f"{flag} " in text, flag


def test_faults_are_one_line_errors_and_lose_nothing(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(SystemExit):
        run(tmp_path, "--agent", "all", name="afile")
    assert "is a file" in capsys.readouterr().err
    assert run(tmp_path, "--agent", "random:k=16", "--epochs", "1") == 0
    progress = json.loads((tmp_path / "run" / "progress.json").read_text())
    env_pt = tmp_path / "run" / progress["checkpoint"] / "env.pt"
    env_pt.write_bytes(env_pt.read_bytes()[:1000])  # a truncated checkpoint
    before = (tmp_path / "run" / "metrics.json").read_text()
    with pytest.raises(SystemExit) as e:
        run(tmp_path, "--resume", "--epochs", "2")
    assert e.value.code == 2 and "cannot resume from" in capsys.readouterr().err
    assert (tmp_path / "run" / "metrics.json").read_text() == before


def test_a_second_writer_of_the_same_out_is_refused(tmp_path, capsys):
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from patchenv.run import locked\n"
        f"with locked({str(out)!r}):\n    print('held', flush=True); time.sleep(30)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SystemExit):
            run(tmp_path, "--agent", "all", "--epochs", "1")
        assert "another process" in capsys.readouterr().err
        assert not (out / "metrics.json").exists()
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    assert run(tmp_path, "--agent", "all", "--epochs", "1") == 0  # free again once the holder is gone


def test_the_default_protocol_monitors_a_validation_split(tmp_path, capsys):
    args = [a for a in BASE if a not in ("--protocol", "paper")]
    assert cli.main([*args, "--agent", "all", "--epochs", "1", "--out", str(tmp_path / "v")]) == 0
    assert "val acc" in capsys.readouterr().out
    m = metrics(tmp_path, "v")
    (row,) = m["epochs"]
    assert m["meta"]["config"]["env"]["val_fraction"] == 0.1 and m["meta"]["config"]["protocol"] == "val"
    assert 0 <= row["val_accuracy"] <= 1 and row["test_accuracy"] is None  # the test split is for the end
    assert 0 <= m["summary"]["test_accuracy"] <= 1
    assert row["global_step"] == (2048 - 205) // 64  # 10% of the training images went to validation
    with pytest.raises(SystemExit):
        cli.main([*BASE, "--val-fraction", "0.2", "--out", str(tmp_path / "x")])
    assert "--protocol paper" in capsys.readouterr().err


# -- faults a user (or a hostile tester) hits: one line, exit status 2, nothing lost ---------------
def one_error_line(err: str, prog: str = "patchenv train") -> str:
    """The error of a refused command: no traceback, exactly one `<prog>: error:` line (after
    argparse's usage lines, which name the subcommand)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 1 and lines[-1] == errors[0] and errors[0].startswith(f"{prog}: error: "), err
    return errors[0]


@pytest.mark.parametrize("extra,words", [
    (["--out", "{tmp}/afile/sub"], "afile is a file"),
    (["--log-dir", "{tmp}/afile/logs"], "afile is a file"),
    (["--log-dir", "{tmp}/afile"], "is a file; expected a folder"),
    (["--out", ""], "empty path"),
    (["--out", "   "], "empty path"),
    (["--checkpoint-every", "0"], "integer >= 1"),
    (["--seed", "-1"], "[0, 4294967295]"),
    (["--seed", str(2**40)], "[0, 4294967295]"),
    (["--seed", "1.5"], "[0, 4294967295]"),
    (["--patch-size", "32"], "nothing to choose"),
    (["--agent", "{tmp}/saved/agent.json"], "not a saved agent file"),
    (["--agent", "random:k=nan"], "k must be an integer"),
    (["--lr", "inf"], "lr must be a positive number"),
])
def test_bad_arguments_are_one_line_errors_that_write_nothing(tmp_path, capsys, extra, words):
    (tmp_path / "afile").write_text("x")
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    argv = [*BASE, "--epochs", "1", *extra] + ([] if "--out" in extra else ["--out", str(tmp_path / "run")])
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    assert words in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "run").exists() and (tmp_path / "afile").read_text() == "x"


def test_settings_too_large_for_memory_are_a_one_line_error(tmp_path, capsys, monkeypatch):
    """torch reports a failed CPU allocation (a huge --dim, --heads or --image-size) as a
    RuntimeError; the CLI says what to shrink. Simulated: a real 6 TB request could be
    granted lazily by an overcommitting kernel."""
    import patchenv.model.training

    def huge(**kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                           "memory: you tried to allocate 6144000000000 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(patchenv.model.training, "SimpleViT", huge)
    with pytest.raises(SystemExit) as e:
        run(tmp_path, "--agent", "all", "--epochs", "1", "--heads", str(10**9))
    assert e.value.code == 2
    assert "not enough memory" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_data_root_under_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    for download in ([], ["--download"]):
        code = cli.main(["train", "--dataset", "cifar10", "--data-root", str(tmp_path / "afile" / "sub"), *download,
                         "--out", str(tmp_path / "x"), "--no-progress"])
        assert code == 1  # data errors keep exit status 1 (test_missing_dataset_says_download)
        line = one_error_line(capsys.readouterr().err, prog="patchenv")
        assert "afile is a file" in line and ("cannot download" in line) == bool(download)
    assert (tmp_path / "afile").read_text() == "x" and not (tmp_path / "x" / "metrics.json").exists()


def test_a_read_only_data_root_with_download_is_refused_before_any_download(tmp_path, capsys, monkeypatch):
    import os
    import tempfile

    import torchvision.datasets

    def no_network(*args, **kwargs):
        raise AssertionError("the download was attempted")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", no_network)
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: simulate the file system's refusal
        def read_only(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    try:
        code = cli.main(["train", "--dataset", "cifar10", "--data-root", str(root), "--download",
                         "--out", str(tmp_path / "x"), "--no-progress"])
    finally:
        root.chmod(0o755)
    assert code == 1
    line = one_error_line(capsys.readouterr().err, prog="patchenv")
    assert "not writable" in line and str(root) in line and list(root.iterdir()) == []


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One finished 1-epoch run of random:k=16 (its checkpoint kept), copied by each test."""
    base = tmp_path_factory.mktemp("finished") / "run"
    assert cli.main([*BASE, "--agent", "random:k=16", "--epochs", "1", "--out", str(base)]) == 0
    return base


def _progress(run_dir):
    return json.loads((run_dir / "progress.json").read_text())


def _rewrite_progress(run_dir, change):
    """progress.json with `change` made, resealed: a file our writer made, that holds
    something wrong (a damaged one is refused by its checksum, tested elsewhere)."""
    progress = checked_json.read(run_dir / "progress.json")
    change(progress)
    checked_json.write(run_dir / "progress.json", progress)


def _folder_instead(path):
    path.unlink()
    path.mkdir()


DAMAGE = {  # what a crash, a full disk or a curious user can leave in a run folder -> words of the error
    "agent file not JSON": (lambda d, ck: (ck / "agent.json").write_text("not json{"), "agent.json"),
    "agent file empty": (lambda d, ck: (ck / "agent.json").write_text(""), "agent.json is empty"),
    "agent file a folder": (lambda d, ck: _folder_instead(ck / "agent.json"), "agent.json is a folder"),
    "rng file garbage": (lambda d, ck: (ck / "rng.pt").write_bytes(b"garbage"), "not a torch.save file"),
    "rng file of something else": (lambda d, ck: __import__("torch").save({"x": 1}, ck / "rng.pt"),
                                   "rng.pt holds no python, numpy and torch"),
    "env checkpoint a folder": (lambda d, ck: _folder_instead(ck / "env.pt"), "env.pt"),
    "progress empty": (lambda d, ck: (d / "progress.json").write_text(""), "progress.json"),
    "progress a folder": (lambda d, ck: _folder_instead(d / "progress.json"), "progress.json is a folder"),
    "progress without config": (lambda d, ck: _rewrite_progress(d, lambda p: p.pop("config")),
                                "holds no run configuration"),
    "progress config without env": (lambda d, ck: _rewrite_progress(d, lambda p: p["config"].pop("env")), "lacks"),
    "progress state garbage": (lambda d, ck: _rewrite_progress(d, lambda p: p.update(state={"x": 1})),
                               "runner state cannot be read"),
    "progress pointing outside": (lambda d, ck: _rewrite_progress(d, lambda p: p.update(checkpoint="../../x")),
                                  "checkpoints/<folder>"),
    "metrics a folder": (lambda d, ck: _folder_instead(d / "metrics.json"), "metrics.json is a folder"),
    # a lock file that cannot be opened is a write that fails: `patchenv: error:`, exit status 1
    "lock a folder": (lambda d, ck: ((d / ".lock").unlink(missing_ok=True), (d / ".lock").mkdir()),
                      ".lock: [Errno 21] Is a directory"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_run_folder_is_a_one_line_error_naming_the_file(tmp_path, capsys, finished_run, damage):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    checkpoint = run_dir / _progress(run_dir)["checkpoint"]
    mutate, words = DAMAGE[damage]
    mutate(run_dir, checkpoint)
    files = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    if damage == "lock a folder":
        assert run(tmp_path, "--resume", "--epochs", "2") == 1
        assert words in one_error_line(capsys.readouterr().err, prog="patchenv")
    else:
        with pytest.raises(SystemExit) as e:
            run(tmp_path, "--resume", "--epochs", "2")
        assert e.value.code == 2
        assert words in one_error_line(capsys.readouterr().err)
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == files  # nothing changed


def test_ppo_resume_mid_rollout_warns_once_and_is_close_but_not_exact(tmp_path, monkeypatch, capsys):
    """The documented exception to exact resume (docs/cli.md, resume): SB3 drops a partly
    collected rollout, so a PPO run interrupted inside one continues and completes with the
    same steps and epochs, warns once that it is not bit-exact, and its numbers are close
    to, but not those of, the uninterrupted run. Resumed from an epoch-end checkpoint
    (between whole rollouts) it is exact, and says nothing."""
    assert run(tmp_path, "--agent", "ppo", "--epochs", "2", name="straight") == 0
    straight = metrics(tmp_path, "straight")["epochs"]

    interrupt_after(monkeypatch, 5)  # inside the first rollout (32 steps, one per epoch)
    assert run(tmp_path, "--agent", "ppo", "--epochs", "2", name="cut") == 130
    monkeypatch.setattr(run_loop, "GracefulInterrupt", GracefulInterrupt)
    capsys.readouterr()
    assert run(tmp_path, "--resume", name="cut") == 0
    err = capsys.readouterr().err
    warnings_ = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings_) == 1 and warnings_[0].startswith("patchenv train: warning: agent 'ppo' resumes")
    assert "not bit-exactly" in warnings_[0] and "Traceback" not in err
    cut = metrics(tmp_path, "cut")
    assert cut["meta"]["status"] == "complete"
    assert [row["global_step"] for row in cut["epochs"]] == [row["global_step"] for row in straight] == [32, 64]
    assert comparable(cut["epochs"]) != comparable(straight)  # not promised bit-exact, and it is not
    for got, want in zip(cut["epochs"], straight):  # but the same run, give or take the policy's masks
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=0.3)
        assert abs(got["mean_patches_kept"] - want["mean_patches_kept"]) < 8

    assert run(tmp_path, "--agent", "ppo", "--epochs", "1", name="whole") == 0
    capsys.readouterr()
    assert run(tmp_path, "--resume", "--epochs", "2", name="whole") == 0
    assert "warning" not in capsys.readouterr().err
    assert comparable(metrics(tmp_path, "whole")["epochs"]) == comparable(straight)  # bit-identical on CPU

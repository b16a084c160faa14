"""`patchenv train`: a tiny epoch, its files, clear errors, and interruption + --resume."""
import json
import signal

import pytest
import torch

from patchenv import cli


# 2048 synthetic images / batch 64 = 32 steps per epoch with the tiny ViT.
BASE = ["train", "--dataset", "synthetic", "--preset", "tiny", "--batch-size", "64", "--device", "cpu", "--quiet"]


def run(tmp_path, *extra, name="run"):
    return cli.main([*BASE, "--out", str(tmp_path / name), *extra])


def metrics(tmp_path, name="run"):
    return json.loads((tmp_path / name / "metrics.json").read_text())


def comparable(rows):
    drop = ("epoch_time_s", "vit_train_time_s", "agent_overhead_s")
    return [{k: v for k, v in row.items() if k not in drop} for row in rows]


def test_one_tiny_epoch_writes_metrics_and_agent(tmp_path, capsys):
    assert run(tmp_path, "--agent", "all", "--epochs", "1") == 0
    out = capsys.readouterr().out
    assert "epoch   1/1" in out and "test acc" in out and "kept 64.0/64" in out
    m = metrics(tmp_path)
    assert m["status"] == "done" and m["partial"] is None
    assert m["args"]["agent"] == "all" and m["environment"]["torch"]
    (row,) = m["epochs"]
    assert row["epoch"] == 1 and row["global_step"] == 32
    assert row["mean_patches_kept"] == 64.0 and 0.0 <= row["test_accuracy"] <= 1.0
    for key in ("train_loss", "test_loss", "epoch_time_s", "vit_train_time_s"):
        assert row[key] > 0
    assert (tmp_path / "run" / "agent.json").exists()
    progress = json.loads((tmp_path / "run" / "progress.json").read_text())
    assert (tmp_path / "run" / progress["checkpoint"] / "env.pt").exists()


def test_unknown_agent_and_dataset_list_the_choices(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        run(tmp_path, "--agent", "no_such_agent")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "unknown agent 'no_such_agent'" in err and "agentvit" in err and "ppo" in err
    with pytest.raises(SystemExit):
        cli.main(["train", "--agent", "all", "--dataset", "no_such_data", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert "unknown dataset 'no_such_data'" in err and "digits" in err


def test_missing_dataset_says_download(tmp_path, capsys):
    code = cli.main(["train", "--dataset", "cifar10", "--data-root", str(tmp_path / "empty"),
                     "--out", str(tmp_path / "x"), "--quiet"])
    assert code == 1 and "download" in capsys.readouterr().err


def test_resume_needs_a_run_and_a_run_is_not_overwritten(tmp_path, capsys):
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


def test_agentvit_interrupted_then_resumed_equals_an_uninterrupted_run(tmp_path):
    agent = ["--agent", "agentvit", "--agent-arg", "frequency=4"]
    assert run(tmp_path, *agent, "--epochs", "2", name="straight") == 0

    steps = [0]

    def interrupt(transition):
        steps[0] += 1
        if steps[0] == 40:  # epoch 2, step 8: a Ctrl-C arriving at a step boundary
            raise KeyboardInterrupt

    args = cli.build_parser().parse_args([*BASE, *agent, "--epochs", "2", "--out", str(tmp_path / "cut")])
    result = cli.train(args, step_callback=interrupt)
    assert result["interrupted"]
    m = metrics(tmp_path, "cut")
    assert m["status"] == "interrupted" and len(m["epochs"]) == 1  # partial results are on disk
    assert m["partial"]["epoch"] == 2 and m["partial"]["steps"] == 8
    assert (tmp_path / "cut" / "checkpoints" / "step-000000040" / "agent.pt").exists()

    assert cli.main(["train", "--resume", "--out", str(tmp_path / "cut"), "--quiet"]) == 0
    resumed, straight = metrics(tmp_path, "cut"), metrics(tmp_path, "straight")
    assert resumed["status"] == "done"
    assert comparable(resumed["epochs"]) == comparable(straight["epochs"])  # bit-identical on CPU
    assert (tmp_path / "cut" / "agent.pt").exists()


def test_ctrl_c_stops_after_the_step_and_resume_extends_the_run(tmp_path):
    steps = [0]

    def press_ctrl_c(transition):
        steps[0] += 1
        if steps[0] == 5:
            signal.raise_signal(signal.SIGINT)  # the handler asks for a clean stop

    args = cli.build_parser().parse_args([*BASE, "--agent", "ppo", "--epochs", "1", "--out", str(tmp_path / "run")])
    assert cli.train(args, step_callback=press_ctrl_c)["interrupted"]
    m = metrics(tmp_path)
    assert m["status"] == "interrupted" and m["partial"]["steps"] == 5
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored

    assert run(tmp_path, "--resume", "--epochs", "2") == 0  # a new total with --epochs
    m = metrics(tmp_path)
    assert m["status"] == "done" and [row["global_step"] for row in m["epochs"]] == [32, 64]
    assert (tmp_path / "run" / "agent.zip").exists()

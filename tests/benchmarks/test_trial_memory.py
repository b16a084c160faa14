"""benchmarks.trial_memory: one trial's memory, measured in a child process."""
import json

import pytest

from benchmarks import trial_memory


def test_trial_memory_measures_one_run_in_a_child(tmp_path, capsys):
    assert trial_memory.main(["--presets", "tiny", "--dataset", "synthetic", "--device", "cpu",
                              "--out", str(tmp_path)]) == 0
    assert "| tiny | 16 | 115 |" in capsys.readouterr().out
    result = json.loads((tmp_path / "trial_memory.json").read_text())
    assert result["meta"]["status"] == "complete" and result["meta"]["device"] == "cpu"
    (row,) = result["results"]
    # one epoch of the synthetic set (2048 images, 10% kept for validation) at the tiny batch
    assert row["steps"] == int(2048 * 0.9) // 16 and row["batch_size"] == 16
    assert row["torch_threads"] == 1
    # the child imported torch (hundreds of MiB) and then trained: its peak is no lower
    assert 100 < row["rss_after_imports_mib"] <= row["peak_rss_mib"]
    assert "cuda_in_use_mib" not in row


def test_trial_memory_refuses_an_unknown_preset(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        trial_memory.main(["--presets", "tiny,huge", "--out", str(tmp_path)])
    assert e.value.code == 2 and "--presets" in capsys.readouterr().err
    assert not (tmp_path / "trial_memory.json").exists()

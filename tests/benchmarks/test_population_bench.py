"""python -m benchmarks.population on the CPU: a row per E, the speed-up is the ratio of the rates, files written."""
import json

import pytest
import torch

from benchmarks import population

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
KEYS = {"preset", "num_envs", "device", "threads", "steps_per_s_population", "steps_per_s_sequential", "speedup",
        "peak_memory_mb", "process_max_rss_mb", "error"}


def test_population_bench_quick(tmp_path, capsys):
    argv = ["--device", "cpu", "--quick", "--num-envs", "1,2", "--steps", "2", "--out", str(tmp_path),
            "--no-progress"]
    assert population.main(argv) == 0
    printed = capsys.readouterr().out
    assert "speed-up" in printed and "| tiny | 2 | cpu |" in printed
    result = json.loads((tmp_path / "population.json").read_text())
    meta = result["meta"]
    assert meta["status"] == "complete" and meta["versions"]["torch"]
    assert meta["config"]["presets"] == ["tiny"] and meta["config"]["steps"] == 2
    assert meta["config"]["repeats"] == 1 and meta["config"]["warmup"] == 1  # --quick's, --steps given
    rows = result["rows"]
    assert [(r["preset"], r["num_envs"]) for r in rows] == [("tiny", 1), ("tiny", 2)]
    for r in rows:
        assert KEYS <= set(r)
        assert r["device"] == "cpu" and r["threads"] == 1 and r["error"] is None
        assert r["steps_per_s_population"] > 0 and r["steps_per_s_sequential"] > 0
        assert r["speedup"] == pytest.approx(r["steps_per_s_population"] / r["steps_per_s_sequential"])
        assert r["peak_memory_mb"] is None and r["process_max_rss_mb"] > 0  # CPU: the process's RSS instead
        assert len(r["population_rates"]) == len(r["sequential_rates"]) == 1
    assert result["target"] is None  # 32 tiny runs were not measured
    assert (tmp_path / "population.png").read_bytes()[:8] == PNG_MAGIC
    md = (tmp_path / "population.md").read_text()
    assert md.startswith("| preset | E |") and md.count("\n| tiny |") == 2


def test_population_bench_host_profile(tmp_path):
    """--host-profile: a row per (preset, E) splitting a step's host time into torch's
    top-level operators and the Python around them; the per-run share is the step's / E."""
    argv = ["--device", "cpu", "--quick", "--num-envs", "1,3", "--steps", "2", "--out", str(tmp_path),
            "--no-progress", "--host-profile"]
    assert population.main(argv) == 0
    host = json.loads((tmp_path / "population.json").read_text())["host_profile"]
    assert [(r["preset"], r["num_envs"]) for r in host] == [("tiny", 1), ("tiny", 3)]
    for r in host:
        assert r["wall_ms"] > 0 and r["torch_ms"] > 0 and r["python_ms"] > 0
        assert r["python_ms_per_run"] == pytest.approx(r["python_ms"] / r["num_envs"])
    assert host[1]["torch_ms"] > host[0]["torch_ms"]  # three runs' arithmetic against one
    assert (tmp_path / "population_host.png").read_bytes()[:8] == PNG_MAGIC
    assert "| tiny | 3 |" in (tmp_path / "population.md").read_text().split("Host time")[1]


@pytest.mark.parametrize("bad", [["--num-envs", "0"], ["--num-envs", "two"], ["--presets", "huge"],
                                 ["--steps", "0"], ["--cuda-graph"]])
def test_population_bench_bad_arguments(tmp_path, capsys, bad):
    with pytest.raises(SystemExit) as e:
        population.main(["--device", "cpu", "--quick", "--out", str(tmp_path), *bad])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("python -m benchmarks.population: error:")
    assert not (tmp_path / "population.json").exists()


def test_population_bench_out_of_memory_row(tmp_path, monkeypatch):
    real = population.measure_cell

    def measure(preset, num_envs, cfg, images):
        if num_envs == 2:  # as a GPU too small for the cell would
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(preset, num_envs, cfg, images)

    monkeypatch.setattr(population, "measure_cell", measure)
    argv = ["--device", "cpu", "--quick", "--num-envs", "2,1", "--steps", "1", "--out", str(tmp_path), "--no-progress"]
    assert population.main(argv) == 0
    failed, ok = json.loads((tmp_path / "population.json").read_text())["rows"]
    assert failed["num_envs"] == 2 and failed["error"] == "out of memory" and failed["speedup"] is None
    assert ok["num_envs"] == 1 and ok["error"] is None and ok["speedup"] > 0
    assert "out of memory" in (tmp_path / "population.md").read_text()

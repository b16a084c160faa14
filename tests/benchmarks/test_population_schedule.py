"""compare_selectors --population: a selector's seeds as one population give the rows the
sequential schedule gives (each run computed alone there)."""
import json

from benchmarks import compare_selectors


def _rows(out, *extra):
    argv = ["--dataset", "synthetic", "--epochs", "1", "--preset", "tiny", "--selectors", "all,random",
            "--seeds", "0,1", "--device", "cpu", "--out", str(out), "--no-progress", "--protocol", "paper",
            "--image-size", "16", "--n-patch-desired", "8", "--eval-fraction", "0.25", *extra]  # N = 16: quick
    assert compare_selectors.main(argv) == 0
    result = json.loads((out / "results.json").read_text())
    return result["meta"]["config"]["schedule"], result["runs"]


def test_population_schedule_gives_the_sequential_rows(tmp_path):
    schedule, together = _rows(tmp_path / "pop", "--population")
    assert schedule == "population"
    _, alone = _rows(tmp_path / "seq", "--schedule", "sequential")
    assert [(r["selector"], r["seed"]) for r in together] == [(r["selector"], r["seed"]) for r in alone]
    for got, want in zip(together, alone):
        assert abs(got["test_accuracy"] - want["test_accuracy"]) <= 2 / 128  # float order, at most a test image or two
        assert got["train_flops"] == want["train_flops"] and got["mean_patches_kept"] == want["mean_patches_kept"]

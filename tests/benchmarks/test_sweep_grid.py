"""compare_selectors --grid (local backend): grid points as their own comparisons, keys checked as flags."""
import csv
import json

import pytest

from benchmarks import compare_selectors
from benchmarks.sweep import plan
from compare_cli import compare


def _config(*argv):
    parser = compare_selectors.build_parser()
    args = compare_selectors.parse_args(parser, ["--device", "cpu", *argv])
    cfg = compare_selectors.make_config(args)
    return cfg, plan.grid_points(cfg, args)


def test_a_grid_point_is_its_own_comparison(tmp_path, capsys):
    assert compare(tmp_path, "--grid", "alpha=0.3,0.7") == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["meta"]["config"]["grid"] == {"alpha": [0.3, 0.7]}
    runs = {(r["setting"], r["selector"]): r for r in result["runs"]}
    assert set(runs) == {(f"alpha={a}", s) for a in (0.3, 0.7) for s in ("all", "random")}
    for (setting, selector), r in runs.items():
        assert r["alpha"] == float(setting.split("=")[1])
        folder = tmp_path / "runs" / setting / f"{selector}-seed0"
        assert json.loads((folder / "metrics.json").read_text())["meta"]["config"]["setting"] == {"alpha": r["alpha"]}
        # each point's own `all` is its reference
        ref = runs[(setting, "all")]
        assert r["speedup_vs_all"] == pytest.approx(ref["train_time_s"] / r["train_time_s"])
        assert r["accuracy_delta_vs_all"] == pytest.approx(r["test_accuracy"] - ref["test_accuracy"])
    # alpha weighs the reward only: the ViT trains the same at both points ...
    for selector in ("all", "random"):
        assert runs[("alpha=0.3", selector)]["test_accuracy"] == runs[("alpha=0.7", selector)]["test_accuracy"]
    # ... and random keeps n_patch_desired = 30 patches, so its patch term is 0 and its
    # reward is alpha times the same loss ratio at both points
    low, high = runs[("alpha=0.3", "random")]["mean_reward"], runs[("alpha=0.7", "random")]["mean_reward"]
    assert low / 0.3 == pytest.approx(high / 0.7, rel=1e-9)
    # the table groups by setting; the CSV has the setting and the key
    lines = [line for line in printed.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| setting | selector |")
    assert [line.split("|")[1:3] for line in lines[1:]] == [
        [" alpha=0.3 ", " all "], [" alpha=0.3 ", " random "], [" alpha=0.7 ", " all "], [" alpha=0.7 ", " random "]]
    with open(tmp_path / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:5] == ["selector", "seed", "dataset", "setting", "alpha"]
    assert [row["alpha"] for row in rows] == ["0.3", "0.3", "0.7", "0.7"]


def test_grid_points_cross_keys_and_follow_presets():
    cfg, points = _config("--grid", "preset=tiny,small", "n_patch_desired=20,40", "--batch-size", "8")
    assert [p["setting"] for p in points] == ["preset=tiny,n_patch_desired=20", "preset=tiny,n_patch_desired=40",
                                              "preset=small,n_patch_desired=20", "preset=small,n_patch_desired=40"]
    assert [p["env"]["dim"] for p in points] == [32, 32, 64, 64]  # the preset's ViT ...
    assert {p["env"]["batch_size"] for p in points} == {8}  # ... and a flag given still wins over it
    assert [p["env"]["n_patch_desired"] for p in points] == [20, 40, 20, 40]
    assert cfg["grid"] == {"preset": ["tiny", "small"], "n_patch_desired": [20, 40]}
    _, (only,) = _config()  # no grid: the sweep's own configuration, with no setting
    assert "setting" not in only and "grid" not in only


@pytest.mark.parametrize("grid, expected", [
    ("nope=1,2", "unknown key 'nope'"),
    ("alpha", "expects KEY=V1,V2"),
    ("alpha=", "no values"),
    ("alpha=0.3,x", "expected a number"),
    ("alpha=1.5", "alpha"),  # checked as --alpha checks it
    ("preset=huge", "'huge' is not one of"),
    ("dataset=mnist", "unknown dataset 'mnist'"),
    ("compile=maybe", "expected true or false"),
    ("alpha=0.3,0.3", "listed twice"),
])
def test_bad_grids_are_one_line_errors(tmp_path, capsys, grid, expected):
    with pytest.raises(SystemExit) as e:
        compare(tmp_path, "--grid", grid)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--grid" in err and expected in err
    assert not (tmp_path / "results.json").exists()


def test_a_grid_point_that_cannot_be_built_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit):  # --protocol paper forbids a validation split
        compare(tmp_path, "--grid", "val_fraction=0,0.2")
    assert "grid point val_fraction=0.2" in capsys.readouterr().err


def test_resume_refuses_other_grid_keys(tmp_path, capsys):
    assert compare(tmp_path, "--grid", "lr=0.001", selectors="all") == 0
    with pytest.raises(SystemExit):
        compare(tmp_path, "--resume", "--grid", "alpha=0.5", selectors="all")
    assert "grid keys" in capsys.readouterr().err

"""benchmarks.merge_sweeps: two sweeps run side by side (seed 0 | seed 1) merge into the
report one sweep of both seeds writes, and what cannot be merged is refused in one line,
writing nothing."""
import json

import pytest

from benchmarks.merge_sweeps import main as merge_main
from compare_cli import compare


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    root = tmp_path_factory.mktemp("merge")
    assert compare(root / "a", "--seeds", "0") == 0
    assert compare(root / "b", "--seeds", "1") == 0
    assert compare(root / "both", "--seeds", "0,1") == 0
    return root


def rows(folder):
    return json.loads((folder / "results.json").read_text())


def test_two_sweeps_merge_into_what_one_sweep_of_both_seeds_writes(sweeps, tmp_path):
    out = tmp_path / "merged"
    assert merge_main([str(sweeps / "a"), str(sweeps / "b"), "--out", str(out)]) == 0
    merged, both = rows(out), rows(sweeps / "both")
    assert [(r["selector"], r["seed"]) for r in merged["runs"]] == [(r["selector"], r["seed"]) for r in both["runs"]]
    assert merged["meta"]["config"]["seeds"] == [0, 1] and merged["meta"]["status"] == "complete"
    assert merged["meta"]["merged_from"] == [str(sweeps / "a"), str(sweeps / "b")]
    for m, b in zip(merged["runs"], both["runs"]):
        # the same runs (seeded alike: same curves and FLOPs); ratios against all recomputed per seed
        assert [e["train_loss"] for e in m["curve"]] == [e["train_loss"] for e in b["curve"]]
        assert m["train_flops"] == b["train_flops"] and m["test_accuracy"] == b["test_accuracy"]
        part = rows(sweeps / ("a" if m["seed"] == 0 else "b"))
        [own] = [r for r in part["runs"] if r["selector"] == m["selector"]]
        assert m["accuracy_delta_vs_all"] == pytest.approx(own["accuracy_delta_vs_all"])
    assert (out / "results.md").is_file() and (out / "results.csv").is_file()
    assert "Merged from 2 sweeps" in (out / "results.md").read_text()


@pytest.mark.parametrize("case, message", [
    ("same-run", "is in both"),
    ("other-config", "another configuration"),
    ("unfinished", "not complete"),
    ("one-part", "two or more different sweep folders"),
    ("missing", "holds no sweep"),
])
def test_what_cannot_be_merged_is_refused_in_one_line_writing_nothing(sweeps, tmp_path, case, message, capsys):
    parts = {"same-run": ["a", "both"], "one-part": ["a", "a"], "missing": ["a", "nowhere"]}.get(case, ["a", "b"])
    paths = [str(sweeps / name) for name in parts]
    if case == "other-config":
        assert compare(tmp_path / "c", "--seeds", "1", epochs=2) == 0
        paths = [str(sweeps / "a"), str(tmp_path / "c")]
    if case == "unfinished":
        assert compare(tmp_path / "c", "--seeds", "1", "--stop-after-steps", "10") == 130
        paths = [str(sweeps / "a"), str(tmp_path / "c")]
    out = tmp_path / "merged"
    with pytest.raises(SystemExit):
        merge_main([*paths, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("python -m benchmarks.merge_sweeps: error:") and message in err[-1]
    assert not out.exists()


def test_an_earlier_merge_is_not_replaced_without_overwrite(sweeps, tmp_path, capsys):
    out = tmp_path / "merged"
    assert merge_main([str(sweeps / "a"), str(sweeps / "b"), "--out", str(out)]) == 0
    before = (out / "results.json").read_text()
    with pytest.raises(SystemExit):
        merge_main([str(sweeps / "a"), str(sweeps / "b"), "--out", str(out)])
    assert "already holds results" in capsys.readouterr().err and (out / "results.json").read_text() == before
    assert merge_main([str(sweeps / "a"), str(sweeps / "b"), "--out", str(out), "--overwrite"]) == 0

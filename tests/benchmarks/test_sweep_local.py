"""The interleaved schedule's statuses mean what they say: a run between its turns is
`paused` (not `complete`), an interrupted one `interrupted`; a resumed sweep completes
every run and lists the rows in the plan's order."""
import json

from benchmarks import compare_selectors

TINY = ["--dataset", "synthetic", "--preset", "tiny", "--batch-size", "64", "--device", "cpu", "--no-progress",
        "--protocol", "paper", "--seeds", "0,1", "--epochs", "2"]


def statuses(out):
    return {folder.name: json.loads((folder / "metrics.json").read_text())["meta"]["status"]
            for folder in sorted((out / "runs").iterdir())}


def test_paused_between_turns_then_complete_in_the_plans_order(tmp_path):
    out = tmp_path / "sweep"
    args = [*TINY, "--selectors", "random:k=32", "--out", str(out)]
    # 2048 images / 64 = 32 steps an epoch; 4 runs (all and random, 2 seeds) take a turn
    # each in round one (128 steps); the stop lands inside round two's first turn.
    assert compare_selectors.main([*args, "--stop-after-steps", str(4 * 32 + 5)]) == 130
    seen = statuses(out)
    assert sorted(seen.values()) == ["interrupted", "paused", "paused", "paused"], seen
    assert compare_selectors.main([*args, "--resume"]) == 0
    assert set(statuses(out).values()) == {"complete"}
    runs = json.loads((out / "results.json").read_text())["runs"]
    # the plan's order: seed, then selector (all first), not the order the turns finished in
    assert [(r["selector"], r["seed"]) for r in runs] == [("all", 0), ("random:k=32", 0), ("all", 1),
                                                           ("random:k=32", 1)]

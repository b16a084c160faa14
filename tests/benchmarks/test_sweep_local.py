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


def test_equal_flops_holds_every_selector_to_alls_training_flops(tmp_path):
    """--budget equal-flops: random:k=16 keeps a quarter of the patches, so it trains more
    steps than `all` (past `all`'s 2 epochs, the last epoch cut) until its FLOPs reach
    `all`'s, overshooting by less than one of its own steps."""
    out = tmp_path / "flops"
    args = ["--dataset", "synthetic", "--preset", "tiny", "--batch-size", "64", "--device", "cpu", "--no-progress",
            "--protocol", "paper", "--seeds", "0", "--epochs", "2", "--budget", "equal-flops",
            "--selectors", "random:k=16", "--out", str(out)]
    assert compare_selectors.main(args) == 0
    runs = {r["selector"]: r for r in json.loads((out / "results.json").read_text())["runs"]}
    ref, mine = runs["all"], runs["random:k=16"]
    assert ref["steps"] == 2 * 32  # 2048 images / 64 = 32 steps an epoch
    step = mine["train_flops"] / mine["steps"]  # every random:k=16 step costs the same
    assert ref["train_flops"] <= mine["train_flops"] < ref["train_flops"] + step
    assert mine["steps"] > ref["steps"] and mine["steps"] % 32 != 0  # more epochs, the last one cut
    meta = json.loads((out / "runs" / "random_k_16-seed0" / "metrics.json").read_text())["meta"]
    assert meta["status"] == "complete" and meta["config"]["budget"]["flops"] == ref["train_flops"]

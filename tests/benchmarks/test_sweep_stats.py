"""benchmarks.sweep.stats on small hand-made rows: the curves' split, targets, the cost to
reach them, accuracy at equal FLOPs."""
import pytest

from benchmarks.sweep.stats import curve_key, fill_relative


def _run(selector, time, acc, curve, split="val"):
    return {"selector": selector, "seed": 0, "train_time_s": time, "test_accuracy": acc, "curve": curve,
            "eval_split": split}


def test_the_curves_split_is_the_one_the_runner_recorded():
    # the rows' eval_split decides, whatever fields the curve happens to hold
    val = _run("all", 1.0, 0.5, [{"val_accuracy": None, "test_accuracy": 0.5}], split="val")
    test = _run("all", 1.0, 0.5, [{"val_accuracy": 0.4, "test_accuracy": 0.5}], split="test")
    assert curve_key([val]) == "val_accuracy"
    assert curve_key([test]) == "test_accuracy"
    assert curve_key([]) == "test_accuracy"


def test_accuracy_at_equal_flops_interpolates_the_reference_curve():
    ref = _run("all", 4.0, 0.8, [{"train_flops": 100, "train_time_s": 2.0, "train_tokens": 1, "val_accuracy": 0.5},
                                 {"train_flops": 200, "train_time_s": 4.0, "train_tokens": 2, "val_accuracy": 0.7}])
    cheap = _run("random", 2.0, 0.75,
                 [{"train_flops": 60, "train_time_s": 1.0, "train_tokens": 1, "val_accuracy": 0.45},
                  {"train_flops": 150, "train_time_s": 2.0, "train_tokens": 2, "val_accuracy": 0.66}])
    tiny = dict(cheap, seed=0, selector="tiny", curve=[dict(cheap["curve"][0], train_flops=50)])
    runs = [ref, cheap, tiny]
    fill_relative(runs, None)
    # At 150 FLOPs the reference is halfway between 0.5 and 0.7: 0.6; below its first point it holds 0.5.
    assert cheap["accuracy_delta_at_equal_flops"] == pytest.approx(0.66 - 0.6)
    assert tiny["accuracy_delta_at_equal_flops"] == pytest.approx(0.45 - 0.5)
    assert ref["accuracy_delta_at_equal_flops"] == pytest.approx(0.0)
    assert cheap["flops_to_target"] is None and cheap["speedup_to_target_flops"] is None  # never reached 0.7
    # the target is the reference's final 0.7 on the curves' (validation) split
    assert cheap["target_accuracy"] == 0.7 and ref["time_to_target_s"] == 4.0
    assert cheap["speedup_vs_all"] == 2.0 and cheap["accuracy_delta_vs_all"] == pytest.approx(-0.05)


def test_a_given_target_and_the_speedups_to_reach_it():
    ref = _run("all", 6.0, 0.9, [{"train_flops": 10, "train_time_s": 3.0, "train_tokens": 5, "test_accuracy": 0.6},
                                 {"train_flops": 20, "train_time_s": 6.0, "train_tokens": 10, "test_accuracy": 0.9}],
               split="test")
    fast = _run("k", 2.0, 0.8, [{"train_flops": 4, "train_time_s": 1.0, "train_tokens": 2, "test_accuracy": 0.65},
                                {"train_flops": 8, "train_time_s": 2.0, "train_tokens": 4, "test_accuracy": 0.8}],
                split="test")
    fill_relative([ref, fast], 0.6)
    # both reach 0.6 at their first evaluation: 3 s and 10 FLOPs against 1 s and 4 FLOPs
    assert (fast["time_to_target_s"], fast["tokens_to_target"], fast["flops_to_target"]) == (1.0, 2, 4)
    assert fast["speedup_to_target"] == 3.0 and fast["speedup_to_target_flops"] == 2.5
    assert ref["speedup_to_target"] == 1.0


def test_fewer_than_three_seeds_show_the_range_not_a_t_interval():
    from benchmarks.common import fmt_ci

    assert fmt_ci([0.9, 0.8], "{:.2f}", 100) == "85.00 (80.00 to 90.00)"  # 2 seeds: mean (min to max)
    assert fmt_ci([64.0, 64.0], "{:.1f}") == "64.0"  # no spread to show
    # 3 seeds: mean ± t(0.975, 2) * s / sqrt(3) = 4.303 * 10 / 1.732 = 24.84
    assert fmt_ci([0.9, 0.8, 0.7], "{:.2f}", 100) == "80.00 ± 24.84"
    assert fmt_ci([1.0, 1.1, 1.2], "{:.2f}", null=1.0) == "1.10 ± 0.25"  # the interval holds 1: no star

"""The RL statistics (IQM, stratified bootstrap, probability of improvement, FLOPs to
target against grow), checked against values computed by hand."""
import math

import numpy as np
import pytest

from benchmarks.sweep.rl_stats import (fewer_flops_to_target, iqm, probability_of_improvement, rl_statistics,
                                       rl_table, stratified_bootstrap)


def test_iqm_cuts_a_quarter_at_each_end():
    assert iqm([100, 1, 3, 2, 4]) == 3.0  # int(5 / 4) = 1 cut each end: mean(2, 3, 4)
    assert iqm([8, 1, 2, 3, 4, 5, 6, 7]) == 4.5  # 2 cut each end: mean(3, 4, 5, 6)
    assert iqm([7.0]) == 7.0


def test_probability_of_improvement_counts_pairs_and_half_ties():
    # pairs (1,2) no, (1,0) yes, (2,2) tie, (2,0) yes: 2.5 of 4
    assert probability_of_improvement([1, 2], [2, 0]) == 0.625


def test_bootstrap_of_constant_runs_is_the_point_and_covers_it_otherwise():
    assert stratified_bootstrap(iqm, [(np.full(5, 0.8),)], reps=200) == pytest.approx((0.8, 0.8, 0.8))
    rng = np.random.default_rng(0)
    point, low, high = stratified_bootstrap(iqm, [(rng.normal(0.5, 0.1, 20),), (rng.normal(0.7, 0.1, 20),)], reps=500)
    assert low < point < high and low > 0.45 and high < 0.75  # two tasks averaged: about 0.6


def test_fewer_flops_to_target_pairs_by_seed_and_counts_misses_as_infinite():
    runs = [{"selector": "grow", "seed": s, "flops_to_target": f} for s, f in ((0, 10), (1, 10), (2, None), (3, 5))]
    runs += [{"selector": "x", "seed": s, "flops_to_target": f} for s, f in ((0, 8), (1, None), (2, None), (3, 6))]
    # seed 0 wins, 1 loses (miss), 2 both miss (half), 3 loses
    assert fewer_flops_to_target(runs, "x") == (0.375, 4)
    assert fewer_flops_to_target(runs, "nobody") is None


def test_rl_statistics_per_selector():
    runs = [{"selector": "all", "seed": s, "test_accuracy": a, "flops_to_target": 10.0}
            for s, a in enumerate((0.80, 0.81, 0.82))]
    runs += [{"selector": "grow", "seed": s, "test_accuracy": a, "flops_to_target": 6.0}
             for s, a in enumerate((0.83, 0.84, 0.85))]
    stats = rl_statistics(runs, ["all", "grow"], reps=300)
    assert stats["grow"]["p_better_than_all"]["value"] == 1.0 and "p_fewer_flops_to_target_than_grow" not in stats["grow"]
    assert stats["all"]["iqm_test_accuracy"]["value"] == pytest.approx(0.81)
    assert stats["all"]["p_fewer_flops_to_target_than_grow"] == 0.0 and stats["all"]["pairs_with_grow"] == 3
    assert math.isclose(stats["grow"]["iqm_test_accuracy"]["value"], 0.84)
    assert "| grow | 3 | 84.00 [" in rl_table(stats)


def test_cost_to_target_against_all_pairs_by_seed_and_counts_misses_as_infinite():
    runs = [{"selector": "all", "seed": s, "test_accuracy": 0.8, "time_to_target_s": t, "flops_to_target": f}
            for s, t, f in ((0, 100.0, 10), (1, 200.0, 20), (2, None, None), (3, 50.0, 40), (4, 100.0, 10))]
    runs += [{"selector": "x", "seed": s, "test_accuracy": 0.8, "time_to_target_s": t, "flops_to_target": f}
             for s, t, f in ((0, 50.0, 3), (1, 100.0, 4), (2, 10.0, 1), (3, None, None), (4, 30.0, 5))]
    stats = rl_statistics(runs, ["all", "x"], reps=300)["x"]
    # seed 2 is left out (all missed); ratios 0.5, 0.5, inf (a miss), 0.3: IQM cuts one at each end
    assert stats["iqm_time_to_target_vs_all"]["value"] == pytest.approx(0.5)
    # FLOPs ratios 0.3, 0.2, inf, 0.5: the middle two, 0.3 and 0.5
    assert stats["iqm_flops_to_target_vs_all"]["value"] == pytest.approx(0.4)
    assert stats["iqm_time_to_target_vs_all"]["low"] <= 0.5 <= stats["iqm_time_to_target_vs_all"]["high"]
    assert "| x | 5 |" in rl_table({"x": stats}) and "0.50 [" in rl_table({"x": stats})

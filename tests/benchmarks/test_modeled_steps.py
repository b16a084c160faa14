"""The time objective's cost model read off a run's epoch curve (`benchmarks.common.modeled_steps`,
on `priced_steps`)."""
import pytest

from benchmarks.common import modeled_steps, priced_steps

# Two epochs of 10 steps: 8 patches kept, then all 64.
CURVE = [{"global_step": 10, "mean_patches_kept": 8.0}, {"global_step": 20, "mean_patches_kept": 64.0}]


def test_a_run_costs_its_steps_at_fixed_plus_kept_over_fixed_plus_all():
    # by hand: 10 steps at 24 + 8 and 10 at 24 + 64, in steps of 24 + 64
    assert modeled_steps(CURVE, 24, 64) == pytest.approx((10 * 32 + 10 * 88) / 88)


def test_every_patch_costs_one_step_a_step_whatever_the_fixed_cost():
    full = [{"global_step": 843 * (i + 1), "mean_patches_kept": 64.0} for i in range(3)]
    for fixed in (0, 12, 24):
        assert modeled_steps(full, fixed, 64) == pytest.approx(3 * 843)


def test_upto_step_stops_inside_an_epoch_at_that_epochs_rate():
    assert modeled_steps(CURVE, 24, 64, upto_step=15) == pytest.approx((10 * 32 + 5 * 88) / 88)
    assert modeled_steps(CURVE, 24, 64, upto_step=10) == pytest.approx(10 * 32 / 88)


def test_without_a_fixed_cost_it_is_the_share_of_patches():
    assert modeled_steps(CURVE, 0, 64) == pytest.approx(10 * 8 / 64 + 10)


def test_priced_steps_prices_each_epochs_steps_at_its_mean_kept():
    # by hand: 10 steps at 8 patches priced 2.0 s, 10 at 64 priced 5.0 s
    price = {8.0: 2.0, 64.0: 5.0}.__getitem__
    assert priced_steps(CURVE, price) == pytest.approx(10 * 2.0 + 10 * 5.0)
    assert priced_steps(CURVE, price, upto_step=12) == pytest.approx(10 * 2.0 + 2 * 5.0)

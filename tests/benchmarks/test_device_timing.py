"""The device report's paired ratios and repeats, and the JUnit reader, on small hand-made inputs."""
import pytest

from benchmarks.common import paired_stats
from benchmarks.device.gpu_tests import parse_junit
from benchmarks.device.harness import ReportConfig, repeats_for


def test_paired_stats_are_quartiles_of_the_per_repeat_ratios():
    # ratios 2, 4, 3: median 3; numpy's linear quartiles 2.5 and 3.5. The ratio of the
    # medians (4 / 1) would be another number: the pairing is what is tested.
    assert paired_stats([2.0, 4.0, 6.0], [1.0, 1.0, 2.0]) == {"ratio": 3.0, "ratio_p25": 2.5, "ratio_p75": 3.5}


@pytest.mark.parametrize("seconds, budget, repeats", [(0.5, 4.0, 8), (0.5, 0.1, 3), (0.5, 100.0, 25), (0.0, 1.0, 25)])
def test_repeats_fit_the_budget_within_the_configured_bounds(seconds, budget, repeats):
    assert repeats_for(ReportConfig(min_repeats=3, max_repeats=25), seconds, budget) == repeats


def test_junit_counts_and_short_failure_texts(tmp_path):
    path = tmp_path / "r.xml"
    path.write_text('<testsuites><testsuite>'
                    '<testcase name="a" time="0.5"/>'
                    '<testcase name="b" time="1"><failure message="boom&#10;second line">trace</failure></testcase>'
                    '<testcase name="c"><skipped message="no CUDA"/></testcase>'
                    '<testcase name="d"><error>setup broke</error></testcase>'
                    '</testsuite></testsuites>')
    got = parse_junit(path)
    assert got["counts"] == {"passed": 1, "failed": 1, "error": 1, "skipped": 1}
    assert got["failures"] == ["b: boom", "d: setup broke"]
    assert [(t["name"], t["outcome"], t["time_s"]) for t in got["tests"]] == [
        ("a", "passed", 0.5), ("b", "failed", 1.0), ("c", "skipped", 0.0), ("d", "error", 0.0)]

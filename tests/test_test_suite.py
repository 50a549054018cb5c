"""The suite CI runs fits its time: by the committed record of each test's seconds on the slowest
CPU kind (benchmarks/test-suite/durations.json, tests/conftest.py), the tests left in CI share two
workers' time within 20 minutes, less the few minutes ``scripts/test.sh`` takes to install."""
import conftest

MINUTES_FOR_PYTEST = 16


def test_the_tests_left_in_ci_fit_two_workers_in_the_time_for_pytest():
    seconds = conftest.recorded_seconds()
    assert len(seconds) > 500, "the record names too few tests to judge the suite by"
    in_ci = sum(value for value in seconds.values() if value <= conftest.SLOW_SECONDS)
    assert in_ci / 2 <= MINUTES_FOR_PYTEST * 60, (
        f"the tests left in CI took {in_ci:.0f} s of one core on the recorded machine: lower conftest.SLOW_SECONDS")

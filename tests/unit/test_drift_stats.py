"""Drift detection's statistics (services/drift_stats.py), nothing running: each test finds a real
change, ignores chance and changes too small to matter, and grades severity by the effect."""

from __future__ import annotations

import random

import pytest

from services import drift_stats
from services.drift_stats import compare_mix, compare_rates, compare_values, grade

P, LEAST = 0.01, 30


def noisy(center: float, n: int, seed: int, spread: float = 0.1) -> list[float]:
    """`n` values around `center`, within +-spread (relative), the same for the same seed."""
    rng = random.Random(seed)
    return [center * (1 + rng.uniform(-spread, spread)) for _ in range(n)]


def test_a_doubled_cost_is_a_high_finding_by_mann_whitney() -> None:
    found = compare_values("cost", noisy(0.01, 40, 1), noisy(0.02, 40, 2), p_threshold=P, min_samples=LEAST)
    assert found is not None
    assert (found.metric, found.test, found.severity) == ("cost", "mann_whitney_u", "high")
    assert found.baseline_value == pytest.approx(0.01, rel=0.05)
    assert found.current_value == pytest.approx(0.02, rel=0.05)
    assert found.change == pytest.approx(1.0, rel=0.1)
    assert found.p_value < 1e-10 and (found.baseline_count, found.current_count) == (40, 40)
    assert found.details["current_median"] == pytest.approx(0.02, rel=0.1)


def test_the_same_distribution_is_no_finding() -> None:
    # Many seeds: same-distribution noise never reaches the 10 % effect that an alert needs.
    for seed in range(50):
        base, cur = noisy(100, 40, seed), noisy(100, 40, seed + 1000)
        assert compare_values("latency_ms", base, cur, p_threshold=P, min_samples=LEAST) is None


def test_identical_values_in_both_windows_are_no_finding() -> None:
    assert compare_values("tokens", [50.0] * 40, [50.0] * 40, p_threshold=P, min_samples=LEAST) is None


def test_a_significant_but_small_change_is_no_finding() -> None:
    # 5 % higher, thousands of samples: significant, but below the 10 % an alert needs.
    base, cur = noisy(100, 4000, 3, spread=0.01), noisy(105, 4000, 4, spread=0.01)
    assert compare_values("latency_ms", base, cur, p_threshold=P, min_samples=LEAST) is None


def test_a_large_change_on_too_few_samples_is_no_finding() -> None:
    assert compare_values("cost", noisy(1, 29, 5), noisy(3, 40, 6), p_threshold=P, min_samples=LEAST) is None


def test_a_large_change_that_is_not_significant_is_no_finding() -> None:
    # Means 30 % apart, but the spread is so wide that the ranks cannot tell the windows apart.
    base = [1.0, 100.0] * 15
    cur = [1.0, 130.0] * 15
    assert compare_values("latency_ms", base, cur, p_threshold=P, min_samples=LEAST) is None


def test_a_drop_is_drift_too() -> None:
    found = compare_values(
        "output_length", noisy(400, 40, 7), noisy(260, 40, 8), p_threshold=P, min_samples=LEAST
    )
    assert found is not None and found.severity == "medium" and found.change == pytest.approx(-0.35, abs=0.05)


def test_from_nothing_to_something_is_high() -> None:
    found = compare_values("cost", [0.0] * 40, noisy(0.01, 40, 9), p_threshold=P, min_samples=LEAST)
    assert found is not None and found.severity == "high" and found.change is None


@pytest.mark.parametrize(
    ("effect", "severity"),
    [
        (0.05, None),
        (0.10, "low"),
        (-0.2, "low"),
        (0.25, "medium"),
        (0.49, "medium"),
        (0.5, "high"),
        (3, "high"),
    ],
)
def test_severity_steps_of_a_relative_change(effect: float, severity: str | None) -> None:
    assert grade(effect, drift_stats.RELATIVE_STEPS) == severity


def test_an_error_rate_that_rises_is_found_by_fisher() -> None:
    found = compare_rates("error_rate", 2, 200, 34, 200, p_threshold=P, min_samples=LEAST)
    assert found is not None
    assert (found.test, found.severity) == ("fisher_exact", "high")  # 1 % -> 17 %: 16 points
    assert found.baseline_value == pytest.approx(0.01) and found.current_value == pytest.approx(0.17)
    assert found.details == {"baseline_events": 2, "current_events": 34}


def test_error_rate_severity_is_in_points() -> None:
    found = compare_rates("error_rate", 10, 1000, 80, 1000, p_threshold=P, min_samples=LEAST)
    assert found is not None and found.severity == "medium"  # 1 % -> 8 %: 7 points
    assert (
        compare_rates("error_rate", 10, 1000, 25, 1000, p_threshold=P, min_samples=LEAST) is None
    )  # 1.5 points


def test_an_unchanged_error_rate_and_a_chance_blip_are_no_finding() -> None:
    assert compare_rates("error_rate", 4, 100, 4, 100, p_threshold=P, min_samples=LEAST) is None
    # 0 -> 3 of 40: 7.5 points, but three errors are not evidence.
    assert compare_rates("error_rate", 0, 40, 3, 40, p_threshold=P, min_samples=LEAST) is None


def test_a_new_tool_taking_over_is_a_tool_mix_finding_by_chi_square() -> None:
    base = {"search": 80, "lookup": 20}
    cur = {"search": 30, "lookup": 20, "browse": 50}
    found = compare_mix("tool_mix", base, cur, p_threshold=P, min_samples=LEAST)
    assert found is not None
    assert (found.test, found.severity) == ("chi_square", "high")
    # The shown values are the share of the tool that moved most.
    assert found.details["tool"] == "search"
    assert found.baseline_value == pytest.approx(0.8) and found.current_value == pytest.approx(0.3)
    assert found.details["distance"] == pytest.approx(0.5)


def test_the_same_tool_mix_is_no_finding() -> None:
    base = {"search": 60, "lookup": 40}
    cur = {"search": 57, "lookup": 43}
    assert compare_mix("tool_mix", base, cur, p_threshold=P, min_samples=LEAST) is None
    assert compare_mix("tool_mix", {"search": 90}, {"search": 10}, p_threshold=P, min_samples=5) is None

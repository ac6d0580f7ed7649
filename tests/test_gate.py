"""The gate's statistics: exact Mann-Whitney p-values, bootstrap interval, verdicts."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from msgbench.analysis.gate import (
    IMPROVED,
    INFO,
    OK,
    REGRESSION,
    bootstrap_median_ratio,
    judge,
    rank_sum_p_less,
)

NOISE_CV = 0.02
"""Coefficient of variation of msgs/CPU-s on a quiet machine: runs spread about +-4 %."""
NOISY_CV = 0.04
SIMULATIONS = 200
TRIALS = 5


def _brute_force_p_less(x: list[float], y: list[float]) -> float:
    values = np.array(x + y)
    order = values.argsort(kind="mergesort")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    for v in set(values):  # mid-ranks for ties
        ranks[values == v] = ranks[values == v].mean()
    observed = ranks[: len(x)].sum()
    sums = [ranks[list(c)].sum() for c in itertools.combinations(range(len(values)), len(x))]
    return float(sum(s <= observed + 1e-9 for s in sums) / len(sums))


def test_exact_p_value_matches_enumeration_with_and_without_ties() -> None:
    rng = np.random.default_rng(7)
    for _ in range(60):
        m, n = int(rng.integers(1, 7)), int(rng.integers(1, 7))
        x = [float(v) for v in rng.integers(0, 6, m)]  # small range: many ties
        y = [float(v) for v in rng.integers(0, 6, n)]
        assert rank_sum_p_less(x, y) == pytest.approx(_brute_force_p_less(x, y), abs=1e-12)


def test_fully_separated_samples_give_the_smallest_p() -> None:
    assert rank_sum_p_less([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(1 / math.comb(10, 5))
    assert rank_sum_p_less([6, 7, 8, 9, 10], [1, 2, 3, 4, 5]) == pytest.approx(1.0)
    assert rank_sum_p_less([], [1.0]) == 1.0


def test_bootstrap_interval_contains_the_ratio_and_is_reproducible() -> None:
    base = [100.0, 101.0, 99.0, 102.0, 98.0]
    new = [90.0, 91.0, 89.0, 92.0, 88.0]
    lo, hi = bootstrap_median_ratio(base, new)
    assert lo <= 0.9 <= hi < 1.0
    assert (lo, hi) == bootstrap_median_ratio(base, new)


def _samples(rng: np.random.Generator, shift: float, cv: float = NOISE_CV
             ) -> tuple[list[float], list[float]]:
    base = rng.normal(1e6, 1e6 * cv, TRIALS)
    new = rng.normal(1e6 * (1 - shift), 1e6 * cv, TRIALS)
    return list(base), list(new)


def test_a_ten_percent_slowdown_is_flagged_and_a_a_passes() -> None:
    rng = np.random.default_rng(11)
    base, new = _samples(rng, 0.10)
    v = judge("msgs/CPU-s", base, new, higher_is_better=True, threshold=0.05)
    assert v.verdict == REGRESSION, v
    assert v.p_worse < 0.05 and v.ci_high < 0.95
    base, new = _samples(rng, 0.0)
    assert judge("msgs/CPU-s", base, new, True, 0.05).verdict == OK


def test_false_alarms_and_power_over_many_simulated_comparisons() -> None:
    rng = np.random.default_rng(2026)
    a_a = sum(
        judge("t", *_samples(rng, 0.0), True, 0.05).verdict == REGRESSION
        for _ in range(SIMULATIONS)
    )
    slowed = sum(
        judge("t", *_samples(rng, 0.10), True, 0.05).verdict == REGRESSION
        for _ in range(SIMULATIONS)
    )
    noisy_a_a = sum(
        judge("t", *_samples(rng, 0.0, NOISY_CV), True, 0.05).verdict == REGRESSION
        for _ in range(SIMULATIONS)
    )
    assert a_a / SIMULATIONS <= 0.01, f"{a_a} false alarms in {SIMULATIONS} A/A comparisons"
    assert noisy_a_a / SIMULATIONS <= 0.01, f"{noisy_a_a} false alarms with {NOISY_CV:.0%} noise"
    assert slowed / SIMULATIONS >= 0.8, f"only {slowed} of {SIMULATIONS} slowdowns caught"


def test_a_consistent_but_small_change_is_not_a_regression() -> None:
    # significant (every NEW below every BASE) but only 2 % slower: below the 5 % limit
    base = [100.0, 100.1, 100.2, 100.3, 100.4]
    new = [98.0, 98.1, 98.2, 98.3, 98.4]
    v = judge("t", base, new, True, 0.05)
    assert v.p_worse < 0.05 and v.verdict == OK


def test_latency_direction_improvement_and_report_only() -> None:
    base = [100.0, 101.0, 99.0, 100.5, 99.5]
    slower = [130.0, 131.0, 129.0, 130.5, 129.5]
    assert judge("p50", base, slower, False, 0.15).verdict == REGRESSION
    assert judge("p50", slower, base, False, 0.15).verdict == IMPROVED
    assert judge("p50", base, slower, False, None).verdict == INFO
    with pytest.raises(ValueError):
        judge("p50", [], slower, False, 0.15)

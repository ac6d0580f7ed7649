"""The gate's statistics on synthetic data: exact false alarms, power at known effects, Holm."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msgbench.analysis.stats_tests import (
    INCONCLUSIVE,
    MORE_DATA,
    PASS,
    REGRESSION,
    Evidence,
    decide,
    evidence,
    holm,
    sequential,
    sign_flip_p,
    two_sample_p,
)

LIMIT = 0.05
FAST = 999
"""Resamples for simulations: still a valid p-value, ten times quicker."""
SIMULATIONS = 100


def test_false_alarm_rate_is_exact_over_every_sign_pattern() -> None:
    # Under "no change" every sign pattern of the block log ratios is equally likely; over
    # all 2**n of them the share with p <= a is at most a, for any magnitudes (here skewed).
    magnitudes = np.random.default_rng(3).lognormal(-3, 1.0, 8)
    ps = [sign_flip_p(magnitudes * np.array(s)) for s in itertools.product((-1, 1), repeat=8)]
    for a in (1 / 256, 0.01, 0.05, 0.1, 0.25):
        assert sum(p <= a for p in ps) / len(ps) <= a + 1e-12


@pytest.mark.parametrize("noise", ["normal", "heavy-tailed", "drifting"])
def test_a_a_false_alarms_stay_within_alpha_whatever_the_noise(noise: str) -> None:
    rng = np.random.default_rng({"normal": 1, "heavy-tailed": 2, "drifting": 3}[noise])
    alarms = 0
    for _ in range(SIMULATIONS):
        if noise == "normal":
            d = rng.normal(0, 0.03, 30)
        elif noise == "heavy-tailed":
            d = 0.02 * rng.standard_t(1.5, 30)
        else:  # a machine getting slower block by block: both runs of a block alike,
            # the coin says which is the candidate, so the drift cancels in the ratio
            drift = np.linspace(0, 0.5, 30)
            base, new = drift + rng.normal(0, 0.03, 30), drift + rng.normal(0, 0.03, 30)
            d = new - base
        verdict, _, _ = sequential(d, LIMIT, alpha=0.05, resamples=FAST)
        alarms += verdict == REGRESSION
    # the budget is 5 %; allow the binomial spread of 100 trials (mean <= 5, sd 2.2)
    assert alarms <= 11, f"{alarms} false alarms in {SIMULATIONS}"


def test_power_at_known_effects_and_speed_of_a_pass() -> None:
    rng = np.random.default_rng(7)
    caught = used = passed = 0
    for _ in range(40):
        v, _, _ = sequential(rng.normal(math.log(1.10), 0.02, 30), LIMIT, resamples=FAST)
        caught += v == REGRESSION
        v, n, _ = sequential(rng.normal(0.0, 0.02, 30), LIMIT, resamples=FAST)
        passed += v == PASS
        used += n
    assert caught >= 38, f"a +10 % slowdown at 2 % noise caught {caught} of 40 times"
    assert passed >= 38 and used / 40 <= 12, (passed, used)
    # at 4 % noise a +10 % slowdown is still caught most of the time within 30 blocks
    caught = sum(sequential(rng.normal(math.log(1.10), 0.04, 30), LIMIT,
                            resamples=FAST)[0] == REGRESSION for _ in range(30))
    assert caught >= 25


def test_a_small_consistent_change_passes_and_noise_alone_is_inconclusive() -> None:
    rng = np.random.default_rng(5)
    v, _, ev = sequential(rng.normal(math.log(1.02), 0.005, 30), LIMIT)
    assert v == PASS and 0.01 < ev.estimate < 0.03  # shown slower, but shown below the limit
    # noise ten times the limit: mostly no verdict at the cap, never a false alarm here
    verdicts = [sequential(rng.normal(0.0, 0.5, 30), LIMIT, resamples=FAST)[:2]
                for _ in range(20)]
    assert sum(v == (INCONCLUSIVE, 30) for v in verdicts) >= 15, verdicts
    assert all(v != REGRESSION for v, _ in verdicts)


def test_sequential_stops_at_the_first_deciding_look() -> None:
    d = np.full(30, math.log(1.3)) + np.random.default_rng(1).normal(0, 0.01, 30)
    v, n, ev = sequential(d, LIMIT)
    assert v == REGRESSION and n == 10 and ev.p_worse <= 0.01 / 3


def test_holm_steps_down_and_stops_at_the_first_failure() -> None:
    assert holm([0.01, 0.04, 0.03], 0.05) == [True, False, False]  # 0.01 <= .05/3; .03 > .025
    assert holm([0.001, 0.02, 0.04], 0.05) == [True, True, True]
    assert holm([0.5, 0.001], 0.05) == [False, True]
    assert holm([], 0.05) == []


def test_decide_needs_a_shown_slowdown_not_shown_within_the_limit() -> None:
    ev = [Evidence(10, 0.2, 0.001, 0.9), Evidence(10, 0.02, 0.001, 0.001),
          Evidence(10, 0.0, 0.4, 0.6)]
    assert decide(ev, 0.01, 0.05) == [REGRESSION, PASS, MORE_DATA]


def test_unpaired_relabelling_test() -> None:
    rng = np.random.default_rng(9)
    base = rng.normal(0, 0.02, 10)
    assert two_sample_p(base, base + 0.2) < 0.001
    assert two_sample_p(base + 0.2, base) > 0.9
    ev = evidence(list(base + 0.2), LIMIT, paired=False, base=list(base))
    assert ev.p_worse < 0.001 and ev.p_within > 0.9 and ev.estimate == pytest.approx(
        math.expm1(0.2), rel=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1, 1, allow_nan=False).filter(lambda x: abs(x) > 1e-6),
                min_size=2, max_size=12),
       st.sampled_from([0.25, 0.5, 2.0, 1024.0]))
def test_sign_flip_p_is_scale_free_and_mirrors(d: list[float], scale: float) -> None:
    x = np.array(d)
    p = sign_flip_p(x)
    assert 0 < p <= 1
    assert sign_flip_p(x * scale) == pytest.approx(p)
    # the null is symmetric: P(T >= t) + P(T <= t) = 1 + P(T = t) >= 1
    assert p + sign_flip_p(-x) >= 1 - 1e-9

from __future__ import annotations

import pytest

from msgbench.workload.schedule import NS_PER_S, Schedule


def test_intended_times_come_from_the_start_not_from_now() -> None:
    s = Schedule(start_ns=1_000, rate=3.0)
    assert [s.intended_ns(i) for i in range(4)] == [
        1_000,
        1_000 + 333_333_333,
        1_000 + 666_666_666,
        1_000 + NS_PER_S,
    ]


def test_due_count_is_exact_at_boundaries() -> None:
    s = Schedule(start_ns=0, rate=1000.0)
    assert s.due_count(-1) == 0
    assert s.due_count(0) == 1
    assert s.due_count(999_999) == 1
    assert s.due_count(1_000_000) == 2
    assert s.count_before(NS_PER_S) == 1000
    # a long stall does not shift the schedule: everything due is due at once
    assert s.due_count(5 * NS_PER_S) == 5001


@pytest.mark.parametrize("rate", [0.0, -1.0])
def test_rate_must_be_positive(rate: float) -> None:
    with pytest.raises(ValueError):
        Schedule(0, rate)


def test_fractional_rates_do_not_drift() -> None:
    s = Schedule(start_ns=0, rate=7.0)
    assert s.count_before(60 * NS_PER_S) == 420


@pytest.mark.parametrize("rate", [1.0, 3.0, 7.7, 1000.0, 333_333.3, 2_000_000.0])
def test_intended_block_matches_one_by_one(rate: float) -> None:
    s = Schedule(123_456_789_012, rate)
    first = 10_000_000
    assert s.intended_block(first, first + 500).tolist() == [
        s.intended_ns(i) for i in range(first, first + 500)
    ]


def test_intended_block_far_into_a_long_run() -> None:
    """Past 9.2e9 messages an int64 product index * 1e9 would overflow: still exact here."""
    s = Schedule(0, 1e6)
    first = 9_223_372_030
    assert s.intended_block(first, first + 20).tolist() == [
        s.intended_ns(i) for i in range(first, first + 20)
    ]

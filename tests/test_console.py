"""Numbers for people: three significant digits in the unit that fits."""

from __future__ import annotations

import pytest

from msgbench.analysis.units import format_count, format_ns


@pytest.mark.parametrize(("ns", "text"), [
    (0, "0 ns"), (850, "850 ns"), (12_345, "12.3 us"), (4_560_000, "4.56 ms"),
    (999_600, "1 ms"), (999_999_999, "1 s"), (999.6, "1 us"), (1.2e9, "1.2 s"),
    (3.6e12, "3600 s"),
])
def test_latencies_round_into_the_next_unit_instead_of_an_exponent(ns: float, text: str) -> None:
    assert format_ns(ns) == text


@pytest.mark.parametrize(("n", "text"), [
    (950, "950"), (999.7, "1 k"), (12_345, "12.3 k"), (999_700, "1 M"), (1.05e6, "1.05 M"),
    (-2_500, "-2.5 k"),
])
def test_counts_round_into_the_next_unit_instead_of_an_exponent(n: float, text: str) -> None:
    assert format_count(n) == text

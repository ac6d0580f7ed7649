"""Numbers for people: latencies and counts in three significant digits and a unit."""

from __future__ import annotations

_TIME_UNITS = ((1.0, "ns"), (1e3, "us"), (1e6, "ms"), (1e9, "s"))
_COUNT_UNITS = ((1.0, ""), (1e3, " k"), (1e6, " M"))


def _three_digits(x: float, units: tuple[tuple[float, str], ...], sep: str) -> str:
    """``x`` in the first unit where it shows as at most three digits (999.6 us is 1 ms, not
    ``1e+03 us``); the last unit takes any size."""
    for i, (scale, name) in enumerate(units):
        v = x / scale
        if abs(float(f"{v:.3g}")) < 1000:
            return f"{v:.3g}{sep}{name}".rstrip()
        if i == len(units) - 1:
            return f"{v:.0f}{sep}{name}".rstrip()
    raise AssertionError("unreachable: the last unit always answers")


def format_ns(ns: float) -> str:
    """A latency for people: ``850 ns``, ``12.3 us``, ``4.56 ms``, ``1.2 s``."""
    return _three_digits(ns, _TIME_UNITS, " ")


def format_count(n: float) -> str:
    """A count or rate for people: ``950``, ``12.3 k``, ``1.05 M``."""
    return _three_digits(n, _COUNT_UNITS, "")

"""An injected slowdown that is a fixed amount of work per delivered message.

To prove that a regression gate catches a slowdown, the candidate must be
slower by a known amount. Spinning on a clock does not do that: a spin that
is preempted burns less CPU than asked, so the injected cost shrinks exactly
when the machine is busy. Here every delivered message costs a fixed number of
*work units*, each one step of ``sum(range(k))`` (a C loop over integers: the
same instructions every time, fine-grained enough for a few percent of a
~200 ns delivery). Fractions of a unit per message are carried over, so a
batch of n messages costs round(n x units) units in total.

``MSGBENCH_INJECT_WORK=U`` (units per message, a float) is what ``msgbench ci
--candidate-slowdown 5%`` sets after calibrating: U = 5 % of the workload's
CPU-ns per message / the CPU-ns of one unit. ``MSGBENCH_INJECT_COST_NS=N``
still works: it is turned into units once per process, from a calibration of
the unit's cost in that process, so it too is fixed work (N ns at start-up
speed) rather than a clock spin.
"""

from __future__ import annotations

import os
import time

WORK_ENV = "MSGBENCH_INJECT_WORK"
COST_ENV = "MSGBENCH_INJECT_COST_NS"
CALIBRATION_UNITS = 200_000
"""Units per calibration sample: ~4 ms, long enough against the clock's resolution."""
CALIBRATION_SAMPLES = 9
"""Samples whose fastest is taken: a unit never costs less than its fastest sample, so the work
burnt per message is at least what was asked for, even when a sample ran slowed (a busy SMT
sibling at start-up, a cold cache), which the median let through as a 40 % shortfall."""


def unit_cost_ns() -> float:
    """CPU-ns one work unit costs in this process (the fastest of a few thread-CPU samples)."""
    samples = []
    for _ in range(CALIBRATION_SAMPLES):
        t0 = time.thread_time_ns()
        _work(CALIBRATION_UNITS)
        samples.append((time.thread_time_ns() - t0) / CALIBRATION_UNITS)
    return max(1e-3, min(samples))


def _work(units: int) -> int:
    # sum over a range: a fixed sequence of integer additions, done in C
    return sum(range(units))


def _env_float(name: str) -> float:
    try:
        value = float(os.environ.get(name, "0") or 0)
    except ValueError:
        return 0.0
    return value if value > 0 and value != float("inf") else 0.0


def enabled() -> bool:
    """True when the environment asks for injected work (no calibration is done)."""
    return bool(_env_float(WORK_ENV) or _env_float(COST_ENV))


def injected_work() -> float:
    """Work units to burn per delivered message, from the environment (0: none).

    ``MSGBENCH_INJECT_WORK`` wins; otherwise ``MSGBENCH_INJECT_COST_NS`` is
    converted with :func:`unit_cost_ns` (calibrated once, when asked).
    """
    units = _env_float(WORK_ENV)
    if units:
        return units
    cost_ns = _env_float(COST_ENV)
    return cost_ns / unit_cost_ns() if cost_ns else 0.0


def units_for(slowdown: float, cost_ns_per_msg: float, unit_ns: float) -> float:
    """Units per message that add ``slowdown`` (0.05 = 5 %) to ``cost_ns_per_msg``."""
    if slowdown < 0 or cost_ns_per_msg <= 0 or unit_ns <= 0:
        raise ValueError("slowdown, cost and unit cost must be positive")
    return slowdown * cost_ns_per_msg / unit_ns


class Burner:
    """Burns a fixed number of work units per message, carrying fractions over."""

    def __init__(self, units_per_msg: float) -> None:
        self.units_per_msg = units_per_msg
        self._carry = 0.0
        self.burnt = 0
        """Units burnt so far (what a test checks)."""

    def __call__(self, n_messages: int) -> None:
        """Burn the work of ``n_messages`` deliveries."""
        total = self._carry + n_messages * self.units_per_msg
        k = int(total)
        self._carry = total - k
        if k:
            _work(k)
            self.burnt += k


def burner() -> Burner | None:
    """A :class:`Burner` for this process's injected work, or None when there is none."""
    units = injected_work()
    return Burner(units) if units else None


_default: Burner | None = None
_default_ready = False


def burn(n_messages: int) -> None:
    """Burn the injected work of ``n_messages`` deliveries (nothing when none is injected)."""
    global _default, _default_ready
    if not _default_ready:
        _default, _default_ready = burner(), True
    if _default is not None:
        _default(n_messages)

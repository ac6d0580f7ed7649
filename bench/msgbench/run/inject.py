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
CPU-ns per message / the CPU-ns of one unit. The same units every run, so the same
instructions: what a gate on CPU time or instructions should see.

``MSGBENCH_INJECT_COST_NS=N`` asks for CPU time instead: N ns of this thread's CPU per
delivered message. Every burn is timed on the thread's CPU clock (which does not run
while the thread is preempted), the nanoseconds still owed carry over to the next burn,
and the cost of a unit is re-estimated from each burn, so the total burnt tracks N per
message however the machine's speed drifts during the run (a calibration done once, at
start-up, burnt 40 % short when it caught a fast moment).

Either way the burner counts the units it burnt and the thread CPU-ns they took; the
worker reports both (counters ``injected_units``, ``injected_cpu_ns``), so a result says
what was actually injected, not only what was asked.
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


def units_for(slowdown: float, cost_ns_per_msg: float, unit_ns: float) -> float:
    """Units per message that add ``slowdown`` (0.05 = 5 %) to ``cost_ns_per_msg``."""
    if slowdown < 0 or cost_ns_per_msg <= 0 or unit_ns <= 0:
        raise ValueError("slowdown, cost and unit cost must be positive")
    return slowdown * cost_ns_per_msg / unit_ns


UNIT_COST_SMOOTHING = 0.2
"""Weight of the newest burn in the running estimate of a unit's cost (cost mode)."""


class Burner:
    """Burns injected work for delivered messages and measures what it burnt.

    ``units_per_msg``: fixed work, fractions carried over (a batch of n messages costs
    round(n x units) units). ``ns_per_msg`` (with ``unit_ns``, a first estimate of a unit's
    cost): that much thread CPU time per message, owed time carried over, the unit's cost
    re-estimated from every burn. Exactly one of the two is positive.
    """

    def __init__(self, units_per_msg: float = 0.0, ns_per_msg: float = 0.0,
                 unit_ns: float = 0.0) -> None:
        if (units_per_msg > 0) == (ns_per_msg > 0):
            raise ValueError("give units per message or CPU-ns per message, not both")
        if ns_per_msg > 0 and unit_ns <= 0:
            raise ValueError("a CPU-ns target needs a first estimate of a unit's cost")
        self.units_per_msg = units_per_msg
        self.ns_per_msg = ns_per_msg
        self.unit_ns = unit_ns
        self._carry = 0.0
        """Units (fixed mode) or CPU-ns (cost mode) owed but not yet burnt."""
        self.burnt = 0
        """Units burnt so far."""
        self.cpu_ns = 0
        """Thread CPU-ns those units took, measured around each burn."""

    def __call__(self, n_messages: int) -> None:
        """Burn the work of ``n_messages`` deliveries."""
        if self.ns_per_msg:
            self._carry += n_messages * self.ns_per_msg
            k = int(self._carry / self.unit_ns)
        else:
            total = self._carry + n_messages * self.units_per_msg
            k = int(total)
            self._carry = total - k
        if k <= 0:
            return
        t0 = time.thread_time_ns()
        _work(k)
        took = time.thread_time_ns() - t0
        self.burnt += k
        self.cpu_ns += took
        if self.ns_per_msg:
            self._carry -= took
            if took > 0:
                self.unit_ns += UNIT_COST_SMOOTHING * (took / k - self.unit_ns)


def burner() -> Burner | None:
    """A :class:`Burner` for this process's injected work, or None when there is none."""
    units = _env_float(WORK_ENV)
    if units:
        return Burner(units_per_msg=units)
    cost_ns = _env_float(COST_ENV)
    return Burner(ns_per_msg=cost_ns, unit_ns=unit_cost_ns()) if cost_ns else None


_default: Burner | None = None
_default_ready = False


def burn(n_messages: int) -> None:
    """Burn the injected work of ``n_messages`` deliveries (nothing when none is injected)."""
    global _default, _default_ready
    if not _default_ready:
        _default, _default_ready = burner(), True
    if _default is not None:
        _default(n_messages)


def burnt() -> tuple[int, int]:
    """Units this process's :func:`burn` has burnt so far, and the thread CPU-ns they took."""
    return (0, 0) if _default is None else (_default.burnt, _default.cpu_ns)

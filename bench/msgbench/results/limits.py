"""What limited a run: every result names its first limit.

A figure is a statement about the design under test only when nothing else was the
bottleneck. :func:`name_limits` reads the processes' costs (see
:mod:`msgbench.results.costs`), the window, the publish delay and the machine's CPU
pressure, and says in plain lines, the first limit first:

1. a msgbench process (worker, coordinator) whose busiest thread was runnable the whole
   window: the run measured msgbench, not the target;
2. a server of the target in the same state: the server is the limit;
3. publishers that could not keep their schedule (publish delay p99 above
   :data:`SCHEDULE_P99_NS`);
4. processes that waited for a CPU a sizeable share of the window, and a busy machine;
   this comes first when a saturated process spent a quarter of the window waiting
   (:data:`CONTENDED_SHARE`): it was starved by the machine rather than at its own limit.

An empty list means no limit was found: no process near a full core, publishers on
schedule, no wait for a CPU worth naming.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

SATURATED_SHARE = 0.85
"""A thread runnable (running or waiting for a CPU) this share of the window is saturated.
Not 1: sampling takes time and a hypervisor's steal is neither run nor wait."""
SCHEDULE_P99_NS = 100_000
"""Publish delay p99 above this: the publishers did not keep their schedule."""
WAIT_SHARE = 0.10
"""A process that waited for a CPU this share of the window is named."""
CONTENDED_SHARE = 0.25
"""A saturated process that waited for a CPU this share of the window was starved rather
than at its own limit: the machine's cores come first."""
PRESSURE_SHARE = 0.20
"""Machine CPU pressure ('some') above this share of the window is named."""
STEAL_SHARE = 0.05
"""A hypervisor taking this share of all CPUs' time is named."""
MSGBENCH_ROLES = ("worker", "coordinator")
"""Roles of msgbench's own processes; every other role is a server of the target."""


def _pct(share: float) -> str:
    return f"{share * 100:.0f} %"


def _duration(ns: float) -> str:
    for scale, unit in ((1e9, "s"), (1e6, "ms"), (1e3, "us")):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.0f} ns"


def _is_msgbench(role: str) -> bool:
    return role.split(" ")[0] in MSGBENCH_ROLES


def _load(p: Mapping[str, Any], window_s: float) -> str:
    text = f"at {_pct(float(p.get('core_share', 0.0)))} of a core"
    wait = float(p.get("cpu_wait_s", 0.0)) / window_s
    if wait >= WAIT_SHARE / 2:
        text += f", its threads waiting for a CPU another {_pct(wait)}"
    return text


def _worker_line(p: Mapping[str, Any], kind: str, window_s: float) -> str:
    role = str(p["role"])
    load = _load(p, window_s)
    if kind == "subscriber":
        return (f"subscriber {role} {load}: this run measures msgbench's subscribers, not the "
                "target; spread them with --procs or add agents")
    if kind == "publisher":
        return (f"publisher {role} {load}: this run measures msgbench's publishers, not the "
                "target; spread them with --procs or add agents")
    if kind == "both":
        return (f"{role} (publishers and subscribers) {load}: this run is bound by msgbench's "
                "own worker loop (an in-process target runs inside it)")
    return f"{role} {load}: this run is bound by msgbench itself, not the target"


def name_limits(
    processes: Sequence[Mapping[str, Any]],
    window_s: float,
    publish_delay_p99_ns: float | None = None,
    pressure: Mapping[str, float] | None = None,
    worker_kinds: Mapping[str, str] | None = None,
) -> list[str]:
    """The run's limits as lines for people, the first limit first (see the module doc).

    ``processes`` are result ``processes`` entries (``role``, ``core_share``,
    ``cpu_wait_s``, ``busiest_thread_share``); ``window_s`` the measured window;
    ``publish_delay_p99_ns`` None in closed loop (no schedule); ``pressure`` as
    :meth:`~msgbench.results.costs.CostMeter.pressure` gives it; ``worker_kinds`` maps a
    worker's role to ``subscriber``, ``publisher`` or ``both``. Pure: no I/O.
    """
    if window_s <= 0:
        return []
    kinds = worker_kinds or {}
    out: list[str] = []
    saturated = sorted(
        (p for p in processes if float(p.get("busiest_thread_share", 0.0)) >= SATURATED_SHARE),
        key=lambda p: -float(p.get("busiest_thread_share", 0.0)),
    )
    for p in saturated:
        if _is_msgbench(str(p["role"])):
            out.append(_worker_line(p, kinds.get(str(p["role"]), ""), window_s))
    for p in saturated:
        if not _is_msgbench(str(p["role"])):
            out.append(f"{p['role']} {_load(p, window_s)}: the server is the limit")
    if publish_delay_p99_ns is not None and publish_delay_p99_ns > SCHEDULE_P99_NS:
        out.append("publishers could not keep their schedule: publish delay p99 "
                   f"{_duration(publish_delay_p99_ns)}")
    contention = _contention(processes, window_s, pressure or {})
    if contention is None:
        return out
    starved = any(float(p.get("cpu_wait_s", 0.0)) / window_s >= CONTENDED_SHARE
                  for p in saturated)
    if starved:
        return [contention + ": the machine's cores are the limit", *out]
    return [*out, contention]


def _contention(processes: Sequence[Mapping[str, Any]], window_s: float,
                pressure: Mapping[str, float]) -> str | None:
    """The line on waiting for a CPU, or None when nothing waited worth naming."""
    waits = sorted(
        ((float(p.get("cpu_wait_s", 0.0)) / window_s, str(p["role"])) for p in processes),
        reverse=True,
    )
    waiting = [(share, role) for share, role in waits if share >= WAIT_SHARE]
    machine = []
    if pressure.get("some", 0.0) >= PRESSURE_SHARE:
        machine.append(f"CPU pressure {_pct(pressure['some'])} of the window (machine-wide)")
    if pressure.get("steal", 0.0) >= STEAL_SHARE:
        machine.append(f"the hypervisor took {_pct(pressure['steal'])} of the CPUs' time")
    if waiting:
        names = ", ".join(f"{role} {_pct(share)}" for share, role in waiting[:3])
        more = f" and {len(waiting) - 3} more" if len(waiting) > 3 else ""
        line = f"waited for a CPU (share of the window, threads summed): {names}{more}"
        return line + (f"; {'; '.join(machine)}" if machine else "")
    if machine:
        return "the machine was busy: " + "; ".join(machine)
    return None

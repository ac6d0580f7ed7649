"""CPU, waiting for a CPU and peak memory of the processes that make up a run.

CPU comes from the scheduler's own nanosecond counters; psutil's ``cpu_times`` ticks in
10 ms steps, which reads a 1 s window 0.5-3 % off per process. A process's CPU is its
process CPU-time clock (``clock_gettime`` on ``clock_getcpuclockid(pid)``: every thread,
those that have exited included); the run delay (time runnable but waiting for a CPU) and
the busiest thread come from ``/proc/PID/task/*/schedstat``, summed over the live threads
(an exited thread's waits go with it). Involuntary context switches come from each
thread's ``status``. Where these cannot be read (not Linux) CPU falls back to psutil and
the waits read 0. On a virtual machine, time the hypervisor takes from a vCPU (steal) is
neither run time nor run delay, so a thread that never sleeps can read below a full core.

Peak memory is the kernel's high-water mark (``VmHWM``), so a short spike between two
samples is not missed. ``/proc/pressure/cpu`` (where the kernel has PSI) says how much of
the window some task of the machine, not only of the run, waited for a CPU.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

NS_PER_S = 1_000_000_000
US_PER_S = 1_000_000
PRESSURE_PATH = "/proc/pressure/cpu"


@dataclass(frozen=True)
class ProcessCost:
    """What one process cost: CPU in the measured window and over the run, and peak RSS."""

    role: str
    pid: int
    cpu_s: float
    """CPU seconds (every thread) inside the measured window."""
    cpu_total_s: float
    """CPU seconds from when the run started tracking the process to its last sample."""
    peak_rss_bytes: int
    cpu_wait_s: float = 0.0
    """Seconds its threads were runnable but waiting for a CPU, inside the window."""
    core_share: float = 0.0
    """``cpu_s`` / window length: the share of one core (above 1 with busy threads)."""
    nivcsw: int = 0
    """Involuntary context switches inside the window (preempted while runnable)."""
    busiest_thread_share: float = 0.0
    """Of its busiest thread, (run + run delay) / window: near 1 when that thread never
    waited for work, i.e. the process could not go faster on one core."""

    def to_json(self) -> dict[str, object]:
        """JSON-ready dict."""
        return {
            "role": self.role,
            "pid": self.pid,
            "cpu_s": self.cpu_s,
            "cpu_total_s": self.cpu_total_s,
            "peak_rss_bytes": self.peak_rss_bytes,
            "cpu_wait_s": self.cpu_wait_s,
            "core_share": self.core_share,
            "nivcsw": self.nivcsw,
            "busiest_thread_share": self.busiest_thread_share,
        }


@dataclass(frozen=True)
class ProcSample:
    """One reading of a process: totals over its live threads, and per thread."""

    run_ns: int
    wait_ns: int
    nivcsw: int
    threads: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Thread id -> (run ns, run delay ns)."""
    at_ns: int = 0
    """When it was read (monotonic ns): shares are over the time between a process's own
    samples, since sampling many processes of a loaded machine takes a while."""


def _status_nivcsw(path: str) -> int:
    with open(path, encoding="ascii") as f:
        for line in f:
            if line.startswith("nonvoluntary_ctxt_switches:"):
                return int(line.split()[1])
    return 0


def read_schedstat(pid: int) -> ProcSample | None:
    """Sum ``/proc/PID/task/*/schedstat`` (and switches); None when the process is gone.

    Falls back to psutil's CPU seconds (no waits) where the files cannot be read.
    """
    base = f"/proc/{pid}/task"
    at = time.monotonic_ns()
    try:
        tids = os.listdir(base)
    except OSError:
        return _psutil_sample(pid)
    threads: dict[int, tuple[int, int]] = {}
    nivcsw = 0
    for tid in tids:
        try:
            with open(f"{base}/{tid}/schedstat", encoding="ascii") as f:
                ran, waited, _ = f.read().split()
            nivcsw += _status_nivcsw(f"{base}/{tid}/status")
            threads[int(tid)] = (int(ran), int(waited))
        except (OSError, ValueError):
            continue  # a thread that just exited
    if not threads:
        return None
    run = sum(r for r, _ in threads.values())
    with contextlib.suppress(OSError):  # no CPU clock for it: the live threads' sum stands
        run = max(run, time.clock_gettime_ns(_process_cpu_clock(pid)))
    return ProcSample(run, sum(w for _, w in threads.values()), nivcsw, threads, at)


def _process_cpu_clock(pid: int) -> int:
    """The clock id of ``pid``'s process CPU time (what glibc's ``clock_getcpuclockid``
    returns on Linux: ``MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)``)."""
    return ((~pid) << 3) | 2


def _psutil_sample(pid: int) -> ProcSample | None:
    try:
        t = psutil.Process(pid).cpu_times()
    except (psutil.Error, OSError):
        return None
    return ProcSample(int((t.user + t.system) * NS_PER_S), 0, 0, at_ns=time.monotonic_ns())


def cpu_seconds(pid: int) -> float | None:
    """CPU seconds of ``pid`` so far (every thread), or None when it is gone."""
    s = read_schedstat(pid)
    return None if s is None else s.run_ns / NS_PER_S


def read_pressure(path: str = PRESSURE_PATH) -> tuple[int, int] | None:
    """``/proc/pressure/cpu`` totals (microseconds: some, full), or None without PSI."""
    try:
        with open(path, encoding="ascii") as f:
            text = f.read()
    except OSError:
        return None
    totals = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[-1].startswith("total="):
            totals[parts[0]] = int(parts[-1].removeprefix("total="))
    if "some" not in totals:
        return None
    return totals["some"], totals.get("full", 0)


def read_steal(path: str = "/proc/stat") -> float | None:
    """Seconds the hypervisor has taken from this machine's CPUs (all of them, summed), or
    None where ``/proc/stat`` has no steal column."""
    try:
        with open(path, encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


def peak_rss(pid: int) -> int | None:
    """Peak resident set size of ``pid`` in bytes (Linux ``VmHWM``), or None."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except (psutil.Error, OSError):
        return None


def _later(new: ProcSample, old: ProcSample | None) -> ProcSample:
    """``new``, unless it reads less than ``old`` (a reaped process reads zeros): counters
    only grow, so the last real sample stands."""
    return old if old is not None and new.run_ns < old.run_ns else new


class CostMeter:
    """Samples a set of processes at run start, measure start, measure end and run end.

    ``reader`` reads one process (default: :func:`read_schedstat` on ``/proc``); tests give
    recorded samples instead, so the limit rules are checked on known input.
    """

    def __init__(self, reader: Callable[[int], ProcSample | None] = read_schedstat) -> None:
        self._read = reader
        self.roles: dict[int, str] = {}
        self._first: dict[int, ProcSample] = {}
        self._m_start: dict[int, ProcSample] = {}
        self._m_end: dict[int, ProcSample] = {}
        self._last: dict[int, ProcSample] = {}
        self._peak: dict[int, int] = {}
        self._window_ns: tuple[int, int] | None = None
        self._pressure: list[tuple[int, int] | None] = [None, None]
        self._steal: list[float | None] = [None, None]

    def add(self, role: str, pid: int) -> None:
        """Start tracking ``pid`` under ``role`` (e.g. ``worker 1``, ``redis-server``)."""
        self.roles[pid] = role
        self._first[pid] = self._read(pid) or ProcSample(0, 0, 0)
        self.sample()

    def sample(self) -> None:
        """Refresh CPU and peak memory of every live process (call before one may exit)."""
        for pid in self.roles:
            s = self._read(pid)
            if s is not None:
                self._last[pid] = _later(s, self._last.get(pid))
            rss = peak_rss(pid)
            if rss is not None:
                self._peak[pid] = max(rss, self._peak.get(pid, 0))

    def mark_measure_start(self) -> None:
        """Remember CPU at the start of the measured window."""
        self.sample()
        self._m_start = dict(self._last)
        self._window_ns = (time.monotonic_ns(), 0)
        self._pressure[0] = read_pressure()
        self._steal[0] = read_steal()

    def mark_measure_end(self) -> None:
        """Remember CPU at the end of the measured window."""
        self.sample()
        self._m_end = dict(self._last)
        if self._window_ns is not None:
            self._window_ns = (self._window_ns[0], time.monotonic_ns())
        self._pressure[1] = read_pressure()
        self._steal[1] = read_steal()

    def window_s(self) -> float:
        """Length of the measured window as sampled (0 before both marks)."""
        if self._window_ns is None or not self._window_ns[1]:
            return 0.0
        return (self._window_ns[1] - self._window_ns[0]) / NS_PER_S

    def pressure(self) -> dict[str, float]:
        """The machine over the window: ``some`` / ``full``, the shares of it in which some /
        all non-idle tasks waited for a CPU (``/proc/pressure/cpu``), and ``steal``, the
        share of all CPUs' time a hypervisor took (``/proc/stat``, 10 ms ticks). Each key
        only where the kernel has it; empty before both marks."""
        window = self.window_s()
        if window <= 0:
            return {}
        out: dict[str, float] = {}
        a, b = self._pressure
        if a is not None and b is not None:
            out["some"] = max(0.0, (b[0] - a[0]) / US_PER_S / window)
            out["full"] = max(0.0, (b[1] - a[1]) / US_PER_S / window)
        s0, s1 = self._steal
        if s0 is not None and s1 is not None:
            out["steal"] = max(0.0, (s1 - s0) / window / (os.cpu_count() or 1))
        return out

    def costs(self) -> list[ProcessCost]:
        """One :class:`ProcessCost` per tracked process."""
        window = self.window_s()
        out = []
        zero = ProcSample(0, 0, 0)
        for pid, role in self.roles.items():
            first = self._first.get(pid, zero)
            last = self._last.get(pid, first)
            start = self._m_start.get(pid, first)
            end = self._m_end.get(pid, last)
            cpu = max(0, end.run_ns - start.run_ns) / NS_PER_S
            # Its own samples' interval where both are real, else the meter's marks (a
            # process that died before the window: nothing in it, whatever the divisor).
            span = (end.at_ns - start.at_ns) / NS_PER_S if start.at_ns and end.at_ns else 0.0
            own = span if span > 0 else window
            busiest = 0
            for tid, (run, wait) in end.threads.items():
                r0, w0 = start.threads.get(tid, (0, 0))
                busiest = max(busiest, run + wait - r0 - w0)
            out.append(
                ProcessCost(
                    role,
                    pid,
                    cpu,
                    max(0, last.run_ns - first.run_ns) / NS_PER_S,
                    self._peak.get(pid, 0),
                    cpu_wait_s=max(0, end.wait_ns - start.wait_ns) / NS_PER_S,
                    core_share=cpu / own if own > 0 else 0.0,
                    nivcsw=max(0, end.nivcsw - start.nivcsw),
                    busiest_thread_share=busiest / NS_PER_S / own if own > 0 else 0.0,
                )
            )
        return out

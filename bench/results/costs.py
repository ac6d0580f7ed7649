"""CPU seconds and peak memory of the processes that make up a run.

CPU comes from psutil (user + system, children excluded); peak memory is the
kernel's own high-water mark (``VmHWM``), so a short spike between two samples
is not missed.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class ProcessCost:
    """What one process cost: CPU in the measured window and over the run, and peak RSS."""

    role: str
    pid: int
    cpu_s: float
    cpu_total_s: float
    peak_rss_bytes: int

    def to_json(self) -> dict[str, object]:
        """JSON-ready dict."""
        return {
            "role": self.role,
            "pid": self.pid,
            "cpu_s": self.cpu_s,
            "cpu_total_s": self.cpu_total_s,
            "peak_rss_bytes": self.peak_rss_bytes,
        }


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` so far, or None when it is gone."""
    try:
        t = psutil.Process(pid).cpu_times()
    except (psutil.Error, OSError):
        return None
    return float(t.user + t.system)


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


class CostMeter:
    """Samples a set of processes at run start, measure start, measure end and run end."""

    def __init__(self) -> None:
        self.roles: dict[int, str] = {}
        self._first: dict[int, float] = {}
        self._m_start: dict[int, float] = {}
        self._m_end: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._peak: dict[int, int] = {}

    def add(self, role: str, pid: int) -> None:
        """Start tracking ``pid`` under ``role`` (e.g. ``worker 1``, ``redis-server``)."""
        self.roles[pid] = role
        self._first[pid] = cpu_seconds(pid) or 0.0
        self.sample()

    def sample(self) -> None:
        """Refresh CPU and peak memory of every live process (call before one may exit)."""
        for pid in self.roles:
            cpu = cpu_seconds(pid)
            if cpu is not None:
                self._last[pid] = cpu
            rss = peak_rss(pid)
            if rss is not None:
                self._peak[pid] = max(rss, self._peak.get(pid, 0))

    def mark_measure_start(self) -> None:
        """Remember CPU at the start of the measured window."""
        self.sample()
        self._m_start = dict(self._last)

    def mark_measure_end(self) -> None:
        """Remember CPU at the end of the measured window."""
        self.sample()
        self._m_end = dict(self._last)

    def costs(self) -> list[ProcessCost]:
        """One :class:`ProcessCost` per tracked process."""
        out = []
        for pid, role in self.roles.items():
            last = self._last.get(pid, 0.0)
            start = self._m_start.get(pid, self._first.get(pid, 0.0))
            end = self._m_end.get(pid, last)
            out.append(
                ProcessCost(
                    role,
                    pid,
                    max(0.0, end - start),
                    max(0.0, last - self._first.get(pid, 0.0)),
                    self._peak.get(pid, 0),
                )
            )
        return out

"""Watch the servers a run depends on: a dead or stopped one ends the run, named.

Workers are watched by the pool (their pipes, sentinels and heartbeats); a
server (redis-server, a forwarder, a chat server, a broker) is a process the
target started or found, so the coordinator looks at it here, a few times a
second: gone or a zombie is *died*; stopped by a signal (``T`` state: SIGSTOP,
a debugger) for longer than :data:`STOPPED_GRACE_S` is *stopped*. Either way
the reason names the process by its role and pid.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import psutil

STOPPED_GRACE_S = 1.0
"""How long a server may sit in the stopped state before the run gives up on it: long
enough for a job-control blip, short enough to end the run within seconds."""
CHECK_INTERVAL_S = 0.25


class ServerWatch:
    """Checks a set of (role, pid) server processes; see the module docstring."""

    def __init__(self, servers: Iterable[tuple[str, int]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._servers = [(role, pid) for role, pid in servers if pid > 0]
        self._procs: dict[int, psutil.Process | None] = {}
        for _, pid in self._servers:
            try:
                self._procs[pid] = psutil.Process(pid)
            except psutil.Error:
                self._procs[pid] = None
        self._stopped_since: dict[int, float] = {}
        self._clock = clock
        self._next = 0.0

    def check(self, force: bool = False) -> str | None:
        """One line naming the first server that died or stays stopped, else None.

        Cheap to call often: it looks at most every :data:`CHECK_INTERVAL_S` (unless
        ``force``: when a worker fails, its server may be the cause to name).
        """
        now = self._clock()
        if now < self._next and not force:
            return None
        self._next = now + CHECK_INTERVAL_S
        for role, pid in self._servers:
            state = _state(self._procs.get(pid))
            if state == "dead":
                return f"{role} (pid {pid}) died"
            if state == "stopped":
                since = self._stopped_since.setdefault(pid, now)
                if now - since >= STOPPED_GRACE_S:
                    return (f"{role} (pid {pid}) is stopped (SIGSTOP?) and has not answered for "
                            f"{now - since:.1f} s")
            else:
                self._stopped_since.pop(pid, None)
        return None


def _state(proc: psutil.Process | None) -> str:
    """``dead``, ``stopped`` or ``running``."""
    if proc is None:
        return "dead"
    try:
        status = proc.status()
    except psutil.NoSuchProcess:
        return "dead"
    except psutil.Error:
        return "running"  # not ours to read: assume alive rather than fail a run
    if status in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
        return "dead"
    if status in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP):
        return "stopped"
    return "running"

"""Waiting until a given nanosecond on the event loop, precisely and without spinning.

The open loop hands each message over at its own intended time, so how late a wait
returns is msgbench's own lateness and shows as the target's latency. asyncio's and
uvloop's timers have millisecond resolution; a Linux timerfd armed at an absolute
``CLOCK_MONOTONIC`` time (the clock of :func:`time.monotonic_ns`) and watched with
``loop.add_reader`` wakes the loop within microseconds, once the thread's timer slack
(50 us by default, by which the kernel may defer any wake-up to merge it with others)
is lowered to 1 ns through ``prctl(PR_SET_TIMERSLACK)``.

:class:`TimerfdPacer` arms its timer a little early, by what it has seen the timer be
late, and spins the rest on the clock, within a budget of CPU; ``benchmarks/bench_pacing.py``
measures it against a timer alone and against ``asyncio.sleep``.
Elsewhere (no Linux, no libc) :class:`SleepPacer` falls back to ``asyncio.sleep``.

Every pacer has the same two calls, ``now_ns()`` and ``await wait_until(t_ns)``, so the
send loop can be driven by a fake clock in tests.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import heapq
import os
import sys
import time
from typing import Protocol

CLOCK_MONOTONIC = 1
TFD_TIMER_ABSTIME = 1
TFD_NONBLOCK = os.O_NONBLOCK
TFD_CLOEXEC = os.O_CLOEXEC
PR_SET_TIMERSLACK = 29
TIMER_SLACK_NS = 1
"""The timer slack a pacing thread asks for: the kernel's minimum (0 would mean "reset to
the default")."""
MAX_LEAD_NS = 50_000
"""The most a wait spins: its timer is armed at most this early."""
LEAD_FACTOR = 1.5
"""The lead is this many times the timer's average lateness."""
LATE_WEIGHT = 1 / 32
"""Weight of the newest lateness in its moving average."""
LATE_CLAMP = 2
"""A lateness counts at most this many times ``max_lead_ns`` in the average."""
SPIN_BUDGET = 0.25
"""The most of its time a pacer spends spinning (0.25: a quarter of a core)."""
MIN_SLEEP_S = 0.001
"""Shortest wait of :class:`SleepPacer`: the event loop's own timers have millisecond
resolution, and a shorter sleep turns into a busy loop."""
NS_PER_S = 1_000_000_000


class Pacer(Protocol):
    """A clock and a way to wait on it, for the open-loop send loop."""

    def now_ns(self) -> int:
        """The current time, in the schedule's nanoseconds."""

    async def wait_until(self, t_ns: int) -> None:
        """Return at ``t_ns`` or as soon as possible after it; at once if it has passed."""

    def close(self) -> None:
        """Release what the pacer holds (a file descriptor); it is not used afterwards."""


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class _Libc:
    """The three libc calls the timerfd pacer needs, bound once."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self.timerfd_create = libc.timerfd_create
        self.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
        self.timerfd_create.restype = ctypes.c_int
        self.timerfd_settime = libc.timerfd_settime
        self.timerfd_settime.argtypes = [
            ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec), ctypes.c_void_p,
        ]
        self.timerfd_settime.restype = ctypes.c_int
        self.prctl = libc.prctl
        self.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                               ctypes.c_ulong]
        self.prctl.restype = ctypes.c_int


_libc: _Libc | None = None


def _get_libc() -> _Libc:
    global _libc
    if _libc is None:
        _libc = _Libc()
    return _libc


def lower_timer_slack(slack_ns: int = TIMER_SLACK_NS) -> bool:
    """Set the calling thread's timer slack to ``slack_ns``; False where that is not possible.

    The slack is per thread and applies to every timed wait of the thread (the event
    loop's ``epoll_wait`` included), so call it from the loop's own thread.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(_get_libc().prctl(PR_SET_TIMERSLACK, slack_ns, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


class TimerfdPacer:
    """Waits on one timerfd watched by the running event loop (Linux only).

    Any number of coroutines may wait at once (every publisher of a worker shares one
    pacer, see :func:`acquire_pacer`): the timer is armed for the earliest of their wake
    times, and publishers due at the same instant are woken by one expiry.

    The timer is armed ``lead`` early and the rest is spun on the clock. The lead follows
    how late this timer has been firing (a moving average, times :data:`LEAD_FACTOR`,
    at most ``max_lead_ns``), so on a machine whose timers fire within microseconds only
    microseconds are spun. Spinning is also capped at ``spin_budget`` of the time since
    the pacer was made: past it a wait trusts the timer alone, so a rate whose gaps are
    shorter than the timer's lateness never turns into a busy loop.

    Construct it inside the loop's thread (it lowers that thread's timer slack and
    registers a reader on the loop); raises :class:`OSError` when no timerfd can be made.
    """

    def __init__(self, max_lead_ns: int = MAX_LEAD_NS, spin_budget: float = SPIN_BUDGET) -> None:
        if not sys.platform.startswith("linux"):
            raise OSError("timerfd is Linux only")
        try:
            self._libc = _get_libc()
        except AttributeError as exc:
            raise OSError(f"libc has no timerfd: {exc}") from None
        self.max_lead_ns = max_lead_ns
        self.spin_budget = spin_budget
        self.slack_lowered = lower_timer_slack()
        fd = self._libc.timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_create: {os.strerror(err)}")
        self._fd = fd
        self._spec = _Itimerspec()
        self._spec_ref = ctypes.byref(self._spec)
        self._loop = asyncio.get_running_loop()
        self._heap: list[tuple[int, int, asyncio.Future[None]]] = []
        self._armed_ns = -1
        """The wake time the timer is set to; -1 when disarmed or already fired."""
        self._seq = 0
        self._late_ns = float(max_lead_ns)
        """Moving average of how late the timer fired (ns): a cautious start."""
        self._born_ns = time.monotonic_ns()
        self.spun_ns = 0
        """Nanoseconds spent spinning so far."""
        self._loop.add_reader(fd, self._on_expiry)

    def now_ns(self) -> int:
        """See :class:`Pacer`."""
        return time.monotonic_ns()

    def _arm(self, wake_ns: int) -> None:
        value = self._spec.it_value
        value.tv_sec, value.tv_nsec = divmod(wake_ns, NS_PER_S)
        if self._libc.timerfd_settime(self._fd, TFD_TIMER_ABSTIME, self._spec_ref, None):
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_settime: {os.strerror(err)}")
        self._armed_ns = wake_ns

    def _on_expiry(self) -> None:
        try:
            os.read(self._fd, 8)  # the expiry count; reading it clears the readiness
        except BlockingIOError:
            return  # re-armed before this callback ran: the new expiry is still pending
        fired = self._armed_ns
        self._armed_ns = -1
        now = time.monotonic_ns()
        if fired >= 0:
            # One outlier (a descheduled CPU: milliseconds) must not set the lead for long.
            late = min(now - fired, LATE_CLAMP * self.max_lead_ns)
            self._late_ns += (late - self._late_ns) * LATE_WEIGHT
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, fut = heapq.heappop(heap)
            if not fut.done():
                fut.set_result(None)
        if heap:
            self._arm(heap[0][0])

    def lead_ns(self) -> int:
        """How early the next wait arms its timer (0 once the spin budget is spent)."""
        now = time.monotonic_ns()
        if self.spun_ns > self.spin_budget * (now - self._born_ns):
            return 0
        return min(self.max_lead_ns, int(self._late_ns * LEAD_FACTOR))

    async def wait_until(self, t_ns: int) -> None:
        """See :class:`Pacer`: the timer is armed :meth:`lead_ns` early, the rest spun."""
        lead = self.lead_ns()
        wake = t_ns - lead
        now = time.monotonic_ns()
        if now < wake:
            fut = self._loop.create_future()
            self._seq += 1
            heapq.heappush(self._heap, (wake, self._seq, fut))
            if self._armed_ns < 0 or wake < self._armed_ns:
                self._arm(wake)
            await fut  # a cancelled wait leaves its entry, popped (and ignored) when due
            now = time.monotonic_ns()
        if now < t_ns and lead:
            # Spin (at most ``lead``): it keeps the loop and bills its CPU, hence the budget.
            began = now
            while now < t_ns:
                now = time.monotonic_ns()
            self.spun_ns += now - began

    def close(self) -> None:
        """See :class:`Pacer`."""
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
        for _, _, fut in self._heap:
            fut.cancel()
        self._heap.clear()


class SleepPacer:
    """``asyncio.sleep`` of at least :data:`MIN_SLEEP_S`: the fallback where no timerfd is."""

    def now_ns(self) -> int:
        """See :class:`Pacer`."""
        return time.monotonic_ns()

    async def wait_until(self, t_ns: int) -> None:
        """See :class:`Pacer`; may return up to a millisecond or so late."""
        left = t_ns - time.monotonic_ns()
        if left > 0:
            await asyncio.sleep(max(MIN_SLEEP_S, left / NS_PER_S))

    def close(self) -> None:
        """See :class:`Pacer`."""


def make_pacer() -> Pacer:
    """The most precise pacer this platform has; call it inside the running loop's thread."""
    try:
        return TimerfdPacer()
    except OSError:
        return SleepPacer()


_shared: dict[int, tuple[Pacer, int]] = {}
"""The pacer of each running loop (by ``id``) and how many users hold it."""


def acquire_pacer() -> Pacer:
    """The running loop's shared pacer, made on first use; pair with :func:`release_pacer`.

    Publishers of one worker share it, so those due at the same instant cost one wake-up.
    """
    key = id(asyncio.get_running_loop())
    pacer, users = _shared.get(key) or (make_pacer(), 0)
    _shared[key] = (pacer, users + 1)
    return pacer


def release_pacer(pacer: Pacer) -> None:
    """Give back what :func:`acquire_pacer` returned; the last user closes it."""
    for key, (held, users) in list(_shared.items()):
        if held is pacer:
            if users > 1:
                _shared[key] = (held, users - 1)
            else:
                del _shared[key]
                held.close()
            return

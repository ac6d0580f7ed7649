"""Waiting out a task's service time (``--work``) to the microsecond.

asyncio's and uvloop's timers have millisecond resolution: uvloop rounds a sub-millisecond
``asyncio.sleep`` down to the next loop iteration, so ``--work fixed:100us`` slept about
nothing and a worker looked 5 % busy where it should have been 25 %. The loop's shared
:class:`~msgbench.run.pacer.Pacer` (a timerfd) waits until an absolute nanosecond instead.
"""

from __future__ import annotations

from msgbench.run.pacer import Pacer, acquire_pacer, release_pacer


class WorkTimer:
    """Waits until given instants on the running loop's shared pacer, taken on first use.

    Make and use it inside one event loop; :meth:`close` gives the pacer back.
    """

    def __init__(self) -> None:
        self._pacer: Pacer | None = None

    async def until(self, t_ns: int) -> None:
        """Return at ``t_ns`` (microseconds late at most, on a quiet machine)."""
        await self._get().wait_until(t_ns)

    def _get(self) -> Pacer:
        if self._pacer is None:
            self._pacer = acquire_pacer()
        return self._pacer

    def close(self) -> None:
        """Release the pacer (the loop's last user closes it); the timer may be used again."""
        if self._pacer is not None:
            release_pacer(self._pacer)
            self._pacer = None

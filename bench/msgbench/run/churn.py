"""Subscriber churn: subscribers leave and come back while messages keep flowing.

Subscriber ``i`` of ``n`` is away for ``away_s`` at the start of every period,
shifted by ``i / n`` of a period so that absences are staggered. While away
its subscription is closed; coming back it subscribes again with the same id,
so a durable target can resume from its cursor and a plain pub/sub target
loses what was published meanwhile (booked as loss during churn). Absences
fall inside the measured window only, so every message missed is a measured
one and the split of loss into "while away" and "while connected" is exact.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import MutableSequence, Sequence

from msgbench.api.target import Client, Subscription
from msgbench.run.sink import SubscriberSink

NS = 1_000_000_000
RETURN_MARGIN_S = 0.2


def away_windows(index: int, count: int, away_s: float, period_s: float, start_ns: int,
                 end_ns: int) -> list[tuple[int, int]]:
    """The ``[leave, back)`` times (monotonic ns) of subscriber ``index`` of ``count``.

    Absences start :data:`RETURN_MARGIN_S` after ``start_ns`` at the earliest, and only
    those that end :data:`RETURN_MARGIN_S` before ``end_ns`` are listed: a
    subscriber must be back while messages still flow, because the first message after
    its return is what tells how much it missed.
    """
    period = int(period_s * NS)
    away = int(away_s * NS)
    # the first absence waits a moment, so that warm-up messages still in flight at the
    # start are not mistaken for measured ones missed while away
    t = start_ns + int(RETURN_MARGIN_S * NS) + (index * period) // max(count, 1)
    out = []
    while t + away + int(RETURN_MARGIN_S * NS) <= end_ns:
        out.append((t, t + away))
        t += period
    return out


async def churn(client: Client, sink: SubscriberSink, topics: Sequence[str],
                slots: MutableSequence[Subscription], slot: int,
                windows: Sequence[tuple[int, int]]) -> None:
    """Close and reopen ``slots[slot]`` (the subscription of ``sink``) at each window."""
    for leave, back in windows:
        await _sleep_until(leave)
        sink.away = True
        await slots[slot].close()
        await _sleep_until(back)
        # Before subscribing: messages may arrive together with the confirmation, before
        # subscribe() returns, and their gap belongs to the absence.
        sink.tracker.returned()
        sink.away = False
        slots[slot] = await client.subscribe(sink.sub_id, topics, sink)


async def _sleep_until(t_ns: int) -> None:
    delay = (t_ns - time.monotonic_ns()) / NS
    if delay > 0:
        await asyncio.sleep(delay)

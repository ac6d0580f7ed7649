"""A requester seen as a publisher, so the send loop paces requests like messages.

In closed loop (``--inflight N``) at most N requests are outstanding: a send waits for
replies, and a request unanswered for ``--timeout`` gives up its place (the run counts it
as a timeout at the end).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from msgbench.api.target import Publisher, Requester
from msgbench.run.replies import ReplySink
from msgbench.workload.envelope import restamp


class RequestPublisher(Publisher):
    """A requester seen as a publisher: the send loop paces requests like messages.

    With ``inflight`` (closed loop, ``--inflight N``) at most that many requests are
    outstanding: a send waits for replies, and a request unanswered for ``timeout_s`` gives
    up its place (it is counted as a timeout at the end).
    """

    def __init__(self, requester: Requester, sink: ReplySink, inflight: int = 0,
                 timeout_s: float = 1.0) -> None:
        self.requester = requester
        self.sink = sink
        self.inflight = inflight
        self.timeout_s = timeout_s
        self.sent = 0
        self.given_up = 0

    async def publish(self, topic: str, payloads: Sequence[bytes]) -> None:
        """Send ``payloads`` as requests (see :class:`Publisher`)."""
        if not self.inflight:
            await self.requester.request(topic, payloads)
            return
        i = 0
        while i < len(payloads):
            room = self.inflight - (self.sent - self.sink.replies - self.given_up)
            if room <= 0:
                self.sink.answered.clear()
                try:
                    await asyncio.wait_for(self.sink.answered.wait(), self.timeout_s)
                except TimeoutError:
                    self.given_up += 1
                continue
            # a slot came free only now: the requests go out now, so they say so (the batch
            # was stamped when it was made, and the wait would show as the request leg)
            now = time.monotonic_ns()
            chunk = [restamp(p, now) for p in payloads[i : i + room]]
            await self.requester.request(topic, chunk)
            self.sent += len(chunk)
            i += len(chunk)

    async def close(self) -> None:
        """Close the requester."""
        await self.requester.close()

"""``inproc``: one event loop broadcasting to its clients, the single chat server design.

Publishers and subscribers share one worker process. A publish appends the
message to the queue of every subscriber of its topic, exactly the loop a
single-process chat server runs over its clients; each subscriber's task then
drains its queue in one go. With no network and no serialisation this is
also msgbench's own ceiling: a result near it is limited by the harness, not
the design under test.

A subscriber whose queue passes :data:`MAX_QUEUE` messages gets nothing more
until it catches up, as a server protects itself from a slow client; the
driver counts those as lost.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping, Sequence

from msgbench.api.target import JSON, Client, Publisher, Sink, Subscription, Target

MAX_QUEUE = 100_000


class _Subscriber(Subscription):
    def __init__(self, sink: Sink, hub: _Hub, topics: Sequence[str]) -> None:
        self.sink = sink
        self.hub = hub
        self.topics = list(topics)
        self.queue: deque[bytes] = deque()
        self.wake = asyncio.Event()
        self.task = asyncio.ensure_future(self._drain())

    def push(self, payloads: Sequence[bytes]) -> None:
        if len(self.queue) + len(payloads) > MAX_QUEUE:
            return  # slow client: drop rather than grow without bound
        self.queue.extend(payloads)
        self.wake.set()

    async def _drain(self) -> None:
        queue = self.queue
        deliver = self.sink.deliver
        while True:
            await self.wake.wait()
            self.wake.clear()
            if queue:
                batch = list(queue)
                queue.clear()
                deliver(batch)

    async def close(self) -> None:
        for t in self.topics:
            self.hub.subscribers[t].remove(self)
        self.task.cancel()


class _Hub:
    def __init__(self) -> None:
        self.subscribers: dict[str, list[_Subscriber]] = {}


class _Publisher(Publisher):
    def __init__(self, hub: _Hub) -> None:
        self.hub = hub

    async def publish(self, topic: str, payloads: Sequence[bytes]) -> None:
        for sub in self.hub.subscribers.get(topic, ()):
            sub.push(payloads)


class _Client(Client):
    def __init__(self) -> None:
        self.hub = _Hub()

    async def publisher(self, pub_id: int) -> Publisher:
        return _Publisher(self.hub)

    async def subscribe(self, sub_id: int, topics: Sequence[str], sink: Sink) -> Subscription:
        sub = _Subscriber(sink, self.hub, topics)
        for t in topics:
            self.hub.subscribers.setdefault(t, []).append(sub)
        return sub


class InprocTarget(Target):
    """In-process broadcast; see the module docstring."""

    name = "inproc"
    description = "in-process broadcast: one event loop hands each message to every subscriber"
    colocated = True

    def client(self, endpoint: Mapping[str, JSON], options: Mapping[str, JSON]) -> Client:
        """A fresh hub for this worker (all clients live in it)."""
        return _Client()

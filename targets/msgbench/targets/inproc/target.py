"""``inproc``: one event loop carrying all three patterns, msgbench's own ceiling.

Publishers and subscribers share one worker process:

* **fan-out**: a publish appends the message to the queue of every subscriber of
  its topic, exactly the loop a single-process chat server runs over its clients;
  each subscriber's task drains its queue in one go;
* **shared** (competing consumers): a group has one queue per topic; each member's
  task takes what is there, up to :data:`TAKE_MAX` at a time, and hands it to its
  sink, waiting for the work to be done before it takes more;
* **request/reply**: a request goes to its topic's shared responder queue with the
  requester as its return address; the responder's answers go straight back to
  that requester's sink (a future per batch keeps the requester's send loop free).

With no network and no serialisation a result near this one is limited by the
harness, not the design under test. A fan-out subscriber whose queue passes
:data:`MAX_QUEUE` messages gets nothing more until it catches up, as a server
protects itself from a slow client; the driver counts those as lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from msgbench.api import (
    JSON,
    Client,
    FaultPlan,
    Pattern,
    Publisher,
    QueueDepth,
    Requester,
    Service,
    Sink,
    Subscription,
    Target,
)

MAX_QUEUE = 100_000
TAKE_MAX = 16
"""Most messages a shared-group member takes at once (its prefetch): small, so a member busy
with its work leaves the rest to the others, as competing consumers of one queue do."""


class _Queue:
    """A wakeable deque: producers extend it, one or more consumers take from it."""

    def __init__(self) -> None:
        self.items: deque[Any] = deque()
        self.ready = asyncio.Event()
        self.in_hand = 0
        """Items taken by a shared group's members and not yet handled (unacked)."""

    def put(self, items: Sequence[Any]) -> None:
        self.items.extend(items)
        self.ready.set()

    async def take(self, most: int | None = None) -> list[Any]:
        while not self.items:
            self.ready.clear()
            await self.ready.wait()
        if most is None or len(self.items) <= most:
            out = list(self.items)
            self.items.clear()
        else:
            out = [self.items.popleft() for _ in range(most)]
        return out


class _Consumer(Subscription):
    """A task that takes from a queue and hands over; closing removes it from the hub."""

    def __init__(self, queue: _Queue, detach: Callable[[], None], most: int | None,
                 step: Callable[[list[Any]], Coroutine[Any, Any, None]] | None = None,
                 deliver: Callable[[list[Any]], None] | None = None) -> None:
        self.queue = queue
        self.detach = detach
        self.most = most
        self.task = asyncio.ensure_future(self._run(step, deliver))

    async def _run(self, step: Callable[[list[Any]], Coroutine[Any, Any, None]] | None,
                   deliver: Callable[[list[Any]], None] | None) -> None:
        take, most = self.queue.take, self.most
        if deliver is not None:  # fan-out's hot loop: no coroutine per batch
            while True:
                deliver(await take(most))
        assert step is not None
        while True:
            await step(await take(most))

    async def close(self) -> None:
        self.detach()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


class _Hub:
    def __init__(self) -> None:
        self.fanout: dict[str, list[_Queue]] = {}
        self.shared: dict[tuple[str, str], _Queue] = {}
        """(group, topic) -> the group's queue; a message goes to every group of its topic."""
        self.groups: dict[str, list[str]] = {}
        self.requests: dict[str, _Queue] = {}

    def group_queue(self, group: str, topic: str) -> _Queue:
        q = self.shared.get((group, topic))
        if q is None:
            q = self.shared[(group, topic)] = _Queue()
            self.groups.setdefault(topic, []).append(group)
        return q

    def request_queue(self, topic: str) -> _Queue:
        return self.requests.setdefault(topic, _Queue())


class _Publisher(Publisher):
    def __init__(self, hub: _Hub) -> None:
        self.hub = hub

    async def publish(self, topic: str, payloads: Sequence[bytes]) -> None:
        hub = self.hub
        for q in hub.fanout.get(topic, ()):
            if len(q.items) + len(payloads) <= MAX_QUEUE:  # else: slow client, drop
                q.put(payloads)
        for group in hub.groups.get(topic, ()):
            hub.shared[(group, topic)].put(payloads)


class _Requester(Requester):
    def __init__(self, hub: _Hub, sink: Sink) -> None:
        self.hub = hub
        self.sink = sink

    async def request(self, topic: str, payloads: Sequence[bytes]) -> None:
        # the return address travels beside the request, never inside it
        self.hub.request_queue(topic).put([(self.sink, p) for p in payloads])


class _Client(Client):
    def __init__(self) -> None:
        self.hub = _Hub()

    async def publisher(self, pub_id: int) -> Publisher:
        return _Publisher(self.hub)

    async def subscribe(self, sub_id: int, topics: Sequence[str], sink: Sink,
                        group: str | None = None) -> Subscription:
        if group is None:
            return self._fanout(topics, sink)
        (topic,) = topics  # one queue per member keeps the group's order per topic
        queue = self.hub.group_queue(group, topic)

        async def step(batch: list[bytes]) -> None:
            queue.in_hand += len(batch)
            try:
                await sink.handle(batch)
            finally:
                queue.in_hand -= len(batch)

        return _Consumer(queue, lambda: None, TAKE_MAX, step=step)

    async def queue_depth(self, topic: str, group: str) -> QueueDepth | None:
        """The group's queue: items not yet taken, and taken but not yet handled."""
        queue = self.hub.shared.get((group, topic))
        if queue is None:
            return QueueDepth(0, 0)
        return QueueDepth(len(queue.items), queue.in_hand)

    def _fanout(self, topics: Sequence[str], sink: Sink) -> Subscription:
        queue = _Queue()
        for t in topics:
            self.hub.fanout.setdefault(t, []).append(queue)

        def detach() -> None:
            for t in topics:
                self.hub.fanout[t].remove(queue)

        return _Consumer(queue, detach, None, deliver=sink.deliver)

    async def requester(self, req_id: int, sink: Sink) -> Requester:
        return _Requester(self.hub, sink)

    async def responder(self, resp_id: int, topics: Sequence[str],
                        service: Service) -> Subscription:
        (topic,) = topics
        queue = self.hub.request_queue(topic)

        async def step(batch: list[tuple[Sink, bytes]]) -> None:
            replies = await service.answer([p for _, p in batch])
            by_sink: dict[int, tuple[Sink, list[bytes]]] = {}
            for (sink, _), reply in zip(batch, replies, strict=True):
                by_sink.setdefault(id(sink), (sink, []))[1].append(reply)
            for sink, group in by_sink.values():
                sink.deliver(group)

        return _Consumer(queue, lambda: None, TAKE_MAX, step=step)


class InprocTarget(Target):
    """In-process fan-out, competing consumers and request/reply; see the module docstring."""

    name = "inproc"
    description = ("in-process: one event loop hands each message to every subscriber, to one "
                   "member of a group, or to a responder and back")
    colocated = True
    patterns = frozenset({Pattern.BROADCAST, Pattern.TASKS, Pattern.RPC})
    faults = FaultPlan(responder_runs=())
    """No server to break; its one worker carries every client, so killing it (the
    driver's own fault, tests/test_faults.py) leaves no responder to answer."""

    def client(self, endpoint: Mapping[str, JSON], options: Mapping[str, JSON]) -> Client:
        """A fresh hub for this worker (all clients live in it)."""
        return _Client()

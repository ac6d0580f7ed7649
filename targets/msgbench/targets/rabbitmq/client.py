"""The fast client path for broadcast: whole blocks of publishes per write, deliveries
parsed per read, one multiple-ack per :attr:`~Layout.ack_every` deliveries. (Tasks are
:mod:`~msgbench.targets.rabbitmq.tasks`, request/reply :mod:`~msgbench.targets.rabbitmq.rpc`;
the client object is :class:`~msgbench.targets.rabbitmq.fast.FastClient`.)

A publisher writes each batch as one buffer (:func:`~frames.publish_block`) and waits
only for flow control: the socket's buffer (RabbitMQ's credit flow and memory alarms
stop it reading, so a blocked broker blocks the publisher here rather than in an unbounded
buffer) and, with ``--confirm-window N``, until at most N publishes are unconfirmed.

A subscription is one connection whose consumer hands runs of same-shaped deliveries to
the sink as blocks. Closing it cancels the consumer first and acks everything received up
to the ``Basic.CancelOk``, so a durable queue redelivers nothing its subscriber already
had (no duplicates after a churn) and keeps everything it had not (no loss).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from pamqp import commands

from msgbench.api.target import Publisher, Sink, Subscription
from msgbench.targets.rabbitmq.frames import Shape, publish_block, publish_head, publish_one, tag_of
from msgbench.targets.rabbitmq.layout import Layout, QueueSpec
from msgbench.targets.rabbitmq.wire import (
    AmqpConnection,
    AmqpError,
    AmqpUrl,
    Consumer,
    ack_frame,
    connect,
)

CONSUMER_TAG = "msgbench"
CLOSE_TIMEOUT_S = 2.0
"""How long a closing subscription waits for ``Basic.CancelOk`` before it just closes."""


async def declare_exchanges(conn: AmqpConnection, layout: Layout) -> None:
    """Declare the run's exchanges (idempotent: every client does, whoever comes first)."""
    for name in layout.exchanges():
        await conn.call(commands.Exchange.Declare(exchange=name, exchange_type=layout.exchange_kind,
                                                  durable=layout.durable),
                        commands.Exchange.DeclareOk)


class FastPublisher(Publisher):
    """Publishes blocks to the topics' exchanges (see the module docstring)."""

    def __init__(self, conn: AmqpConnection, layout: Layout) -> None:
        self.conn = conn
        self.layout = layout
        self.props = commands.Basic.Properties(delivery_mode=layout.delivery_mode)
        self.heads: dict[tuple[str, int], bytes] = {}
        self.window = layout.confirm_window
        self.sent = 0
        self.settled = 0
        """Every delivery tag up to this one is confirmed."""
        self.singles: set[int] = set()
        self.nacked = 0
        self.confirm_moved: asyncio.Event = asyncio.Event()

    @classmethod
    async def open(cls, url: AmqpUrl, layout: Layout) -> FastPublisher:
        """Connect, declare the exchanges, switch confirms on if asked."""
        conn = await connect(url)
        try:
            await declare_exchanges(conn, layout)
            pub = cls(conn, layout)
            if layout.confirm_window:
                conn.on_confirm = pub._on_confirm
                await conn.call(commands.Confirm.Select(), commands.Confirm.SelectOk)
        except BaseException:
            conn.close()
            raise
        conn.on_lost = lambda _: pub.confirm_moved.set()
        return pub

    def _on_confirm(self, tag: int, multiple: bool, nack: bool) -> None:
        # A multiple confirm settles every tag up to it; a single one just its own, and
        # single ones may come out of order, so they wait in a set until contiguous.
        if multiple:
            self.settled = max(self.settled, tag)
            self.singles = {t for t in self.singles if t > tag}
        elif tag > self.settled:
            self.singles.add(tag)
        while self.settled + 1 in self.singles:
            self.settled += 1
            self.singles.discard(self.settled)
        if nack:
            self.nacked += 1
        self.confirm_moved.set()

    def route(self, topic: str) -> tuple[str, str]:
        """The exchange and routing key ``topic``'s messages are published with."""
        return self.layout.exchange(topic), self.layout.routing_key(topic)

    @property
    def unconfirmed(self) -> int:
        """Publishes the broker has not confirmed (or nacked) yet."""
        return self.sent - self.settled - len(self.singles)

    async def publish(self, topic: str, payloads: Sequence[bytes]) -> None:
        """Same-sized payloads go as one block; others one frame set each."""
        if not payloads:
            return
        size = len(payloads[0])
        if all(len(p) == size for p in payloads):
            await self.publish_block(topic, b"".join(payloads), len(payloads), size)
            return
        exchange, key = self.route(topic)
        for p in payloads:
            await self._write(publish_one(1, exchange, key, p, self.props,
                                          self.conn.frame_max), 1)

    async def publish_block(self, topic: str, block: bytes, count: int, size: int) -> None:
        """Frame the block in one go (in window-sized pieces under confirms)."""
        exchange, key = self.route(topic)
        if size == 0 or size > self.conn.frame_max - 8:  # several body frames each
            for p in range(0, count * size, size):
                await self._write(publish_one(1, exchange, key, block[p : p + size],
                                              self.props, self.conn.frame_max), 1)
            return
        head = self.heads.get((topic, size))
        if head is None:
            head = self.heads[(topic, size)] = publish_head(1, exchange, key, size, self.props)
        step = min(count, self.window) if self.window else count
        view = memoryview(block)
        for first in range(0, count, step):
            n = min(step, count - first)
            await self._write(publish_block(head, view[first * size : (first + n) * size], n,
                                            size), n)

    async def _write(self, data: bytes, n: int) -> None:
        conn = self.conn
        if self.window:
            while self.unconfirmed + n > self.window:
                self.confirm_moved.clear()
                if conn.error is not None:
                    raise conn.error
                await self.confirm_moved.wait()
            if self.nacked:
                raise AmqpError(f"RabbitMQ nacked {self.nacked} publishes (it could not "
                                "take responsibility for them)")
        conn.write(data)
        self.sent += n
        if conn.paused:
            await conn.drain()

    async def close(self) -> None:
        """Close the connection."""
        self.conn.close()


class FastSubscription(Subscription, Consumer):
    """One subscriber's queue and consumer on a connection of its own."""

    def __init__(self, conn: AmqpConnection, sink: Sink, layout: Layout) -> None:
        self.conn = conn
        self.sink = sink
        self.layout = layout
        self.manual = layout.ack != "auto"
        self.each = layout.ack == "each"
        self.ack_every = max(1, layout.ack_every)
        self.last_tag = 0
        self.unacked = 0
        self.closed = False
        conn.consumer = self
        conn.on_lost = self._lost
        conn.on_cancel = lambda: self._lost("RabbitMQ cancelled the consumer "
                                            "(its queue was deleted?)")

    def _lost(self, reason: str) -> None:
        if not self.closed:
            self.sink.disconnected(reason)

    def block(self, buf: bytes, first: int, count: int, shape: Shape) -> None:
        """Hand the run over uncut, then ack as the ack mode says."""
        self.sink.deliver_block(buf, first, count, shape.stride, shape.body_at, shape.body_size)
        if not self.manual:
            return
        if self.each:
            start = tag_of(buf, first, shape)
            self.conn.write(b"".join(ack_frame(t, False) for t in range(start, start + count)))
            return
        self._acked(tag_of(buf, first + (count - 1) * shape.stride, shape), count)

    def one(self, body: bytes, tag: int, redelivered: bool = False) -> None:
        """A delivery outside a run."""
        self.sink.deliver([body])
        if self.each:
            self.conn.write(ack_frame(tag, False))
        elif self.manual:
            self._acked(tag, 1)

    def _acked(self, tag: int, count: int) -> None:
        self.last_tag = tag
        self.unacked += count
        if self.unacked >= self.ack_every and self.conn.error is None:
            self.conn.write(ack_frame(tag, True))
            self.unacked = 0

    async def close(self) -> None:
        """Cancel the consumer, ack what arrived before the cancel took effect, close."""
        conn = self.conn
        if conn.error is None:
            try:
                await conn.call(commands.Basic.Cancel(consumer_tag=CONSUMER_TAG),
                                commands.Basic.CancelOk, timeout=CLOSE_TIMEOUT_S)
                if self.unacked and self.manual and not self.each:
                    conn.write(ack_frame(self.last_tag, True))
            except AmqpError:
                pass
        self.closed = True
        conn.close()


async def declare_queue(conn: AmqpConnection, spec: QueueSpec) -> str:
    """Declare ``spec``'s queue; returns its name (the broker's, for a server-named one)."""
    ok = await conn.call(commands.Queue.Declare(
        queue=spec.name, durable=spec.durable, exclusive=spec.exclusive,
        auto_delete=spec.auto_delete, arguments=spec.arguments), commands.Queue.DeclareOk)
    return ok.queue or spec.name


async def open_subscription(url: AmqpUrl, layout: Layout, spec: QueueSpec,
                            topics: Sequence[str], sink: Sink) -> FastSubscription:
    """Declare the queue of ``spec``, bind it to ``topics``, consume; returns once consuming.

    Fan-out's subscribers each pass their own queue (group members consume through
    :func:`~msgbench.targets.rabbitmq.tasks.open_member`)."""
    conn = await connect(url)
    try:
        await declare_exchanges(conn, layout)
        sub = FastSubscription(conn, sink, layout)
        if layout.prefetch:
            await conn.call(commands.Basic.Qos(prefetch_count=layout.prefetch),
                            commands.Basic.QosOk)
        queue = await declare_queue(conn, spec)
        for t in topics:
            await conn.call(commands.Queue.Bind(queue=queue, exchange=layout.exchange(t),
                                                routing_key=layout.routing_key(t)),
                            commands.Queue.BindOk)
        await conn.call(commands.Basic.Consume(queue=queue, consumer_tag=CONSUMER_TAG,
                                               no_ack=not sub.manual),
                        commands.Basic.ConsumeOk)
    except BaseException:
        conn.close()
        raise
    return sub


def endpoint_url(endpoint: dict[str, Any]) -> AmqpUrl:
    """The broker's address from ``Endpoint.data``."""
    return AmqpUrl(**endpoint["url"])

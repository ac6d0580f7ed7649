"""Request/reply on RabbitMQ: a request queue per topic, replies to each request's
``reply_to``.

A requester publishes its requests through the default exchange to its topic's request
queue (:meth:`~msgbench.targets.rabbitmq.layout.Layout.request_queue`), each carrying
its return address in ``reply_to``; no correlation id is needed for routing (the
driver's correlation is inside the bytes). Its replies come back

* ``--amqp-reply direct``: through direct reply-to: the requester consumes
  ``amq.rabbitmq.reply-to`` with no-ack on the channel it publishes on (as RabbitMQ
  requires) and publishes with ``reply_to = amq.rabbitmq.reply-to``, which the broker
  rewrites into a return address of that channel;
* ``--amqp-reply queue``: through a reply queue of its own (server-named, exclusive,
  auto-delete), consumed with no-ack.

A responder consumes its topic's request queue with ``--amqp-prefetch``, competing
with the topic's other responders, has the driver answer a run of requests at a time,
publishes each reply to the default exchange with routing key = the request's
``reply_to``, and only then acknowledges the requests (``--amqp-ack``, as for tasks). A
killed responder's unacked requests are requeued by the broker to the others; what comes
back after its timeout the driver counts as late, what never comes as a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence

from pamqp import commands

from msgbench.api.target import Requester, Service, Sink
from msgbench.targets.rabbitmq.client import FastPublisher, declare_queue
from msgbench.targets.rabbitmq.frames import (
    FRAME_END,
    Shape,
    publish_head,
    publish_one,
    reply_to_at,
)
from msgbench.targets.rabbitmq.layout import DIRECT_REPLY_TO, Layout, QueueSpec
from msgbench.targets.rabbitmq.tasks import HANDLE_MAX, AckedConsumer, Acks
from msgbench.targets.rabbitmq.wire import AmqpConnection, AmqpError, AmqpUrl, Consumer, connect

REPLY_TAG = "msgbench.replies"
REQUEST_TAG = "msgbench.requests"
CLOSE_TIMEOUT_S = 2.0
_END = bytes((FRAME_END,))


class FastRequester(FastPublisher, Requester, Consumer):
    """Publishes requests a block at a time; its replies go to ``sink`` as blocks."""

    def __init__(self, conn: AmqpConnection, layout: Layout, sink: Sink, reply_to: str) -> None:
        super().__init__(conn, layout)
        self.sink = sink
        self.props = commands.Basic.Properties(delivery_mode=layout.delivery_mode,
                                               reply_to=reply_to)
        self.closed = False
        conn.consumer = self

    def route(self, topic: str) -> tuple[str, str]:
        """Requests go through the default exchange straight to the topic's queue."""
        return "", self.layout.request_queue(topic).name

    async def request(self, topic: str, payloads: Sequence[bytes]) -> None:
        """Publish ``payloads`` as requests (see :meth:`FastPublisher.publish`)."""
        await self.publish(topic, payloads)

    def block(self, buf: bytes, first: int, count: int, shape: Shape) -> None:
        """Replies, handed over uncut (no acks: they are consumed with no-ack)."""
        self.sink.deliver_block(buf, first, count, shape.stride, shape.body_at, shape.body_size)

    def one(self, body: bytes, tag: int, redelivered: bool = False) -> None:
        """A reply whose body spans several frames."""
        self.sink.deliver([body])

    def _lost(self, reason: str) -> None:
        self.confirm_moved.set()
        if not self.closed:
            self.sink.disconnected(reason)

    async def close(self) -> None:
        """Close the connection (a reply queue goes with it: exclusive)."""
        self.closed = True
        self.conn.close()


async def open_requester(url: AmqpUrl, layout: Layout, topics: Sequence[str],
                         sink: Sink) -> FastRequester:
    """Connect, consume the replies (direct reply-to or an own queue), declare the request
    queues of ``topics`` (so no request is unroutable before a responder is there)."""
    conn = await connect(url)
    try:
        for t in topics:
            await declare_queue(conn, layout.request_queue(t))
        if layout.reply == "direct":
            reply_to = DIRECT_REPLY_TO
        else:
            reply_to = await declare_queue(conn, QueueSpec("", False, True, True))
        req = FastRequester(conn, layout, sink, reply_to)
        conn.on_lost = req._lost
        # direct reply-to: consume before the first publish, on this very channel
        await conn.call(commands.Basic.Consume(queue=reply_to, consumer_tag=REPLY_TAG,
                                               no_ack=True), commands.Basic.ConsumeOk)
        if layout.confirm_window:
            conn.on_confirm = req._on_confirm
            await conn.call(commands.Confirm.Select(), commands.Confirm.SelectOk)
    except BaseException:
        conn.close()
        raise
    return req


class FastResponder(AckedConsumer):
    """Answers its topic's requests, competing with the topic's other responders."""

    def __init__(self, conn: AmqpConnection, layout: Layout, service: Service) -> None:
        self.conn = conn
        self.service = service
        self.acks = Acks(conn, layout)
        self.props = commands.Basic.Properties(delivery_mode=1)
        self.heads: dict[tuple[bytes, int], bytes] = {}
        self.pending: deque[tuple[list[bytes], list[bytes], list[int]]] = deque()
        self.wake = asyncio.Event()
        self.closed = False
        self.consumer_tags: list[str] = []
        conn.consumer = self
        # a lost connection has nobody to tell but the requesters' timeouts, which count
        # it; a dead or stopped broker is named by the coordinator's watch
        conn.on_lost = lambda _: self.wake.set()
        self.task = asyncio.ensure_future(self._run())

    def block(self, buf: bytes, first: int, count: int, shape: Shape) -> None:
        """Queue the run's requests with their return addresses and tags."""
        at, n, stride = first + shape.body_at, shape.body_size, shape.stride
        items = range(first, first + count * stride, stride)
        bodies = [buf[p : p + n] for p in range(at, at + count * stride, stride)]
        addresses = [reply_to_at(buf, i, shape) for i in items]
        tags = [int.from_bytes(buf[i + shape.tag_at : i + shape.tag_at + 8], "big")
                for i in items]
        for k in range(0, count, HANDLE_MAX):
            self.pending.append((bodies[k : k + HANDLE_MAX], addresses[k : k + HANDLE_MAX],
                                 tags[k : k + HANDLE_MAX]))
        self.wake.set()

    def one(self, body: bytes, tag: int, redelivered: bool = False) -> None:
        """A request whose body spans several frames: ``serve`` refuses such sizes for rpc
        (the address is parsed from one-frame deliveries only); should one come anyway it
        is acknowledged and dropped, and the driver counts its timeout."""
        self.acks.done([tag])

    async def _run(self) -> None:
        while not self.closed:
            if not self.pending:
                await self.acks.idle(self.wake)
                continue
            if self.conn.error is not None:
                return
            bodies, addresses, tags = self.pending.popleft()
            replies = await self.service.answer(bodies)
            if self.conn.error is not None:
                return
            self.conn.write(b"".join(self._frame(a, r)
                                     for a, r in zip(addresses, replies, strict=True) if a))
            self.acks.done(tags)
            if self.conn.paused:
                with contextlib.suppress(AmqpError):
                    await self.conn.drain()

    def _frame(self, address: bytes, reply: bytes) -> bytes:
        """One reply published to the default exchange with routing key ``address``."""
        size = len(reply)
        if size == 0 or size > self.conn.frame_max - 8:
            return publish_one(1, "", address.decode(), reply, self.props, self.conn.frame_max)
        head = self.heads.get((address, size))
        if head is None:
            if len(self.heads) > len(self.pending) + 1024:  # return addresses come and go
                self.heads.clear()
            head = self.heads[(address, size)] = publish_head(1, "", address.decode(), size,
                                                              self.props)
        return head + reply + _END



async def open_responder(url: AmqpUrl, layout: Layout, topics: Sequence[str],
                         service: Service) -> FastResponder:
    """Declare the request queues of ``topics``, consume them with the prefetch."""
    conn = await connect(url)
    try:
        if layout.prefetch and layout.ack != "auto":
            await conn.call(commands.Basic.Qos(prefetch_count=layout.prefetch),
                            commands.Basic.QosOk)
        resp = FastResponder(conn, layout, service)
        for i, t in enumerate(topics):
            queue = await declare_queue(conn, layout.request_queue(t))
            tag = f"{REQUEST_TAG}.{i}"
            resp.consumer_tags.append(tag)
            await conn.call(commands.Basic.Consume(queue=queue, consumer_tag=tag,
                                                   no_ack=not resp.acks.manual),
                            commands.Basic.ConsumeOk)
    except BaseException:
        conn.close()
        raise
    return resp

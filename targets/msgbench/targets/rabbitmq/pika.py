"""``--amqp-client aio-pika``: what an aio-pika application sees.

Publishers call ``Exchange.publish`` for every message (with confirms, up to
``--confirm-window`` of them in flight as tasks, as an application gathering publishes
would); subscribers consume with a callback per message and ack as ``--amqp-ack`` says
(``each`` is ``message.ack()`` per message, what ``async with message.process()`` does).
The layout (exchanges, queues, flags) is the fast path's, so the two differ only in the
client.

Tasks: a group member iterates its group's queue (``Queue.iterator``: one message after
another, in delivery order), awaits ``Sink.handle`` for each, then acks it as
``--amqp-ack`` says (``multi:N`` also after an idle gap), or nacks every
``--amqp-nack-every`` K-th fresh one with requeue; the queue depth is asked as the fast
path does (:class:`~msgbench.targets.rabbitmq.tasks.DepthProbe`).

Request/reply: a requester publishes each request with ``default_exchange.publish`` to its
topic's request queue, ``reply_to`` set, and consumes its replies (``amq.rabbitmq.reply-to``
on the same channel, or its own exclusive queue) with a callback per reply; a responder
iterates its request queue like a group member, answers each request, publishes the
reply to its ``reply_to`` and then acks it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from urllib.parse import quote

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
)

from msgbench.api.target import (
    Client,
    Publisher,
    QueueDepth,
    Requester,
    Service,
    Sink,
    Subscription,
    TargetError,
)
from msgbench.targets.rabbitmq.layout import DIRECT_REPLY_TO, Layout, QueueSpec
from msgbench.targets.rabbitmq.tasks import ACK_IDLE_S, DepthProbe
from msgbench.targets.rabbitmq.wire import AmqpUrl

CLOSE_TIMEOUT_S = 2.0


def url_text(url: AmqpUrl) -> str:
    """The URL aio-pika connects to (never shown: it holds the password)."""
    scheme = "amqps" if url.tls else "amqp"
    return (f"{scheme}://{quote(url.user, safe='')}:{quote(url.password, safe='')}@"
            f"{url.host}:{url.port}/{quote(url.vhost, safe='')}")


async def _open(url: AmqpUrl, layout: Layout, confirms: bool = False
                ) -> tuple[AbstractConnection, AbstractChannel, dict[str, AbstractExchange]]:
    conn = await aio_pika.connect(url_text(url))
    try:
        ch = await conn.channel(publisher_confirms=confirms)
        kind = aio_pika.ExchangeType(layout.exchange_kind)
        exchanges = {name: await ch.declare_exchange(name, kind, durable=layout.durable)
                     for name in layout.exchanges()}
    except BaseException:
        await conn.close()
        raise
    return conn, ch, exchanges


class PikaPublisher(Publisher):
    """``Exchange.publish`` per message."""

    def __init__(self, conn: AbstractConnection, exchanges: dict[str, AbstractExchange],
                 layout: Layout) -> None:
        self.conn = conn
        self.exchanges = exchanges
        self.layout = layout
        self.mode = aio_pika.DeliveryMode(layout.delivery_mode)
        self.pending: set[asyncio.Future[object]] = set()

    async def publish(self, topic: str, payloads: Sequence[bytes]) -> None:
        """Publish each message; under confirms keep at most the window in flight."""
        ex = self.exchanges[self.layout.exchange(topic)]
        key = self.layout.routing_key(topic)
        window = self.layout.confirm_window
        for p in payloads:
            msg = aio_pika.Message(p, delivery_mode=self.mode)
            if not window:
                await ex.publish(msg, key)
                continue
            while len(self.pending) >= window:
                done, self.pending = await asyncio.wait(self.pending,
                                                        return_when=asyncio.FIRST_COMPLETED)
                for d in done:
                    d.result()  # a nack or a lost connection raises here
            self.pending.add(asyncio.ensure_future(ex.publish(msg, key)))

    async def close(self) -> None:
        """Close the connection."""
        for f in self.pending:
            f.cancel()
        await self.conn.close()


class PikaSubscription(Subscription):
    """A queue consumed with a callback per message."""

    def __init__(self, conn: AbstractConnection, queue: AbstractQueue, sink: Sink,
                 layout: Layout) -> None:
        self.conn = conn
        self.queue = queue
        self.sink = sink
        self.layout = layout
        self.tag = ""
        self.unacked = 0
        self.last: AbstractIncomingMessage | None = None
        self.closed = False
        conn.close_callbacks.add(self._lost)

    def _lost(self, _: object, exc: BaseException | None = None) -> None:
        if not self.closed:
            self.sink.disconnected(f"RabbitMQ (aio-pika): connection lost: {exc or 'closed'}")

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        """Deliver, then ack per the ack mode."""
        self.sink.deliver([message.body])
        mode = self.layout.ack
        if mode == "each":
            await message.ack()
        elif mode == "multi":
            self.unacked += 1
            self.last = message
            if self.unacked >= self.layout.ack_every:
                self.unacked = 0
                await message.ack(multiple=True)

    async def close(self) -> None:
        """Cancel the consumer, ack what it had, close the connection."""
        try:
            await asyncio.wait_for(self.queue.cancel(self.tag), CLOSE_TIMEOUT_S)
            if self.unacked and self.last is not None:
                await self.last.ack(multiple=True)
        except (aio_pika.exceptions.AMQPError, TimeoutError, ConnectionError):
            pass
        self.closed = True
        await self.conn.close()


class PikaMember(Subscription):
    """A group member on aio-pika (see the module docstring)."""

    def __init__(self, conn: AbstractConnection, queue: AbstractQueue, sink: Sink | None,
                 layout: Layout, nack_every: int = 0) -> None:
        self.conn = conn
        self.queue = queue
        self.sink = sink
        self.layout = layout
        self.nack_every = 0 if layout.ack == "auto" else nack_every
        self.fresh = 0
        self.unacked = 0
        self.last: AbstractIncomingMessage | None = None
        self.seen = 0.0
        self.closed = False
        conn.close_callbacks.add(self._lost)
        self.task = asyncio.ensure_future(self._run())
        self.flusher = asyncio.ensure_future(self._flush_when_idle())

    def _lost(self, _: object, exc: BaseException | None = None) -> None:
        if not self.closed and self.sink is not None:
            self.sink.disconnected(f"RabbitMQ (aio-pika): connection lost: {exc or 'closed'}")

    async def _take(self, message: AbstractIncomingMessage, again: bool) -> None:
        """The work of one message: here, a task handed to the sink."""
        assert self.sink is not None
        await self.sink.handle([message.body], again)

    async def _run(self) -> None:
        layout = self.layout
        auto = layout.ack == "auto"
        nack_every = self.nack_every
        loop = asyncio.get_running_loop()
        async with self.queue.iterator(no_ack=auto) as messages:
            async for message in messages:
                self.seen = loop.time()
                again = bool(message.redelivered)
                if nack_every and not again:
                    self.fresh += 1
                    if self.fresh % nack_every == 0:
                        await message.nack(requeue=True)
                        continue
                await self._take(message, again)
                if layout.ack == "each":
                    await message.ack()
                elif not auto:
                    self.unacked += 1
                    self.last = message
                    if self.unacked >= layout.ack_every:
                        await self._flush()

    async def _flush(self) -> None:
        if self.unacked and self.last is not None:
            self.unacked = 0  # before the await: the loop's next ack covers only newer ones
            await self.last.ack(multiple=True)

    async def _flush_when_idle(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(ACK_IDLE_S / 2)
            if self.unacked and loop.time() - self.seen > ACK_IDLE_S:
                await self._flush()

    async def close(self) -> None:
        """Stop iterating (cancels the consumer), ack what was done, close."""
        self.closed = True
        for t in (self.flusher, self.task):
            t.cancel()
        await asyncio.wait([self.flusher, self.task], timeout=CLOSE_TIMEOUT_S)
        with contextlib.suppress(aio_pika.exceptions.AMQPError, TimeoutError, ConnectionError):
            await asyncio.wait_for(self._flush(), CLOSE_TIMEOUT_S)
        await self.conn.close()


class PikaResponder(PikaMember):
    """Answers the requests of its queue, one at a time, then acks each as a member does."""

    def __init__(self, conn: AbstractConnection, channel: AbstractChannel, queue: AbstractQueue,
                 layout: Layout, service: Service) -> None:
        super().__init__(conn, queue, None, layout)
        self.exchange = channel.default_exchange
        self.service = service

    async def _take(self, message: AbstractIncomingMessage, again: bool) -> None:
        """Answer, and publish the reply to the request's return address."""
        (reply,) = await self.service.answer([message.body])
        if message.reply_to:
            await self.exchange.publish(aio_pika.Message(reply), message.reply_to)


class PikaRequester(Requester):
    """``default_exchange.publish`` per request; a callback per reply."""

    def __init__(self, conn: AbstractConnection, channel: AbstractChannel, layout: Layout,
                 sink: Sink, reply_to: str) -> None:
        self.conn = conn
        self.exchange = channel.default_exchange
        self.layout = layout
        self.sink = sink
        self.reply_to = reply_to
        self.mode = aio_pika.DeliveryMode(layout.delivery_mode)
        self.pending: set[asyncio.Future[object]] = set()
        self.closed = False
        conn.close_callbacks.add(self._lost)

    def _lost(self, _: object, exc: BaseException | None = None) -> None:
        if not self.closed:
            self.sink.disconnected(f"RabbitMQ (aio-pika): connection lost: {exc or 'closed'}")

    async def on_reply(self, message: AbstractIncomingMessage) -> None:
        """A reply: to the sink (consumed no-ack)."""
        self.sink.deliver([message.body])

    async def request(self, topic: str, payloads: Sequence[bytes]) -> None:
        """Publish each request; under confirms keep at most the window in flight."""
        key = self.layout.request_queue(topic).name
        window = self.layout.confirm_window
        for p in payloads:
            msg = aio_pika.Message(p, delivery_mode=self.mode, reply_to=self.reply_to)
            if not window:
                await self.exchange.publish(msg, key)
                continue
            while len(self.pending) >= window:
                done, self.pending = await asyncio.wait(self.pending,
                                                        return_when=asyncio.FIRST_COMPLETED)
                for d in done:
                    d.result()
            self.pending.add(asyncio.ensure_future(self.exchange.publish(msg, key)))

    async def close(self) -> None:
        """Close the connection (a reply queue goes with it: exclusive)."""
        self.closed = True
        for f in self.pending:
            f.cancel()
        await self.conn.close()


async def _declare(ch: AbstractChannel, spec: QueueSpec) -> AbstractQueue:
    return await ch.declare_queue(spec.name or None, durable=spec.durable,
                                  exclusive=spec.exclusive, auto_delete=spec.auto_delete,
                                  arguments=spec.arguments or None)


class PikaClient(Client):
    """aio-pika publishers and subscribers on the fast path's layout."""

    def __init__(self, url: AmqpUrl, layout: Layout) -> None:
        self.url = url
        self.layout = layout
        self.probe = DepthProbe(url, layout)

    async def publisher(self, pub_id: int) -> Publisher:
        """A connection and channel per publisher (confirms on with a window)."""
        conn, _, exchanges = await _open(self.url, self.layout,
                                         confirms=bool(self.layout.confirm_window))
        return PikaPublisher(conn, exchanges, self.layout)

    async def subscribe(self, sub_id: int, topics: Sequence[str], sink: Sink,
                        group: str | None = None) -> Subscription:
        """The subscriber's queue (see the layout), bound to its topics, consumed."""
        layout = self.layout
        if group is not None and len(topics) != 1:
            raise TargetError("rabbitmq --amqp-client aio-pika: a group member takes one topic")
        conn, ch, exchanges = await _open(self.url, layout)
        try:
            if layout.prefetch and not (group is not None and layout.ack == "auto"):
                await ch.set_qos(prefetch_count=layout.prefetch)
            spec = (layout.subscriber_queue(sub_id) if group is None
                    else layout.shared_queue(group, topics[0]))
            queue = await ch.declare_queue(spec.name or None, durable=spec.durable,
                                           exclusive=spec.exclusive,
                                           auto_delete=spec.auto_delete,
                                           arguments=spec.arguments or None)
            for t in topics:
                await queue.bind(exchanges[layout.exchange(t)], layout.routing_key(t))
            if group is not None:
                return PikaMember(conn, queue, sink, layout, layout.nack_every)
            sub = PikaSubscription(conn, queue, sink, layout)
            sub.tag = await queue.consume(sub.on_message, no_ack=layout.ack == "auto")
        except BaseException:
            await conn.close()
            raise
        return sub

    async def requester(self, req_id: int, sink: Sink) -> Requester:
        """Request queues declared, replies consumed no-ack before the first request."""
        layout = self.layout
        conn = await aio_pika.connect(url_text(self.url))
        try:
            ch = await conn.channel(publisher_confirms=bool(layout.confirm_window))
            for t in layout.topics:
                await _declare(ch, layout.request_queue(t))
            if layout.reply == "direct":
                replies = await ch.get_queue(DIRECT_REPLY_TO, ensure=False)
            else:
                replies = await _declare(ch, QueueSpec("", False, True, True))
            req = PikaRequester(conn, ch, layout, sink, replies.name)
            await replies.consume(req.on_reply, no_ack=True)
        except BaseException:
            await conn.close()
            raise
        return req

    async def responder(self, resp_id: int, topics: Sequence[str],
                        service: Service) -> Subscription:
        """A consumer of the topic's request queue, with the prefetch."""
        layout = self.layout
        if len(topics) != 1:
            raise TargetError("rabbitmq --amqp-client aio-pika: a responder takes one topic")
        conn = await aio_pika.connect(url_text(self.url))
        try:
            ch = await conn.channel()
            if layout.prefetch and layout.ack != "auto":
                await ch.set_qos(prefetch_count=layout.prefetch)
            queue = await _declare(ch, layout.request_queue(topics[0]))
            return PikaResponder(conn, ch, queue, layout, service)
        except BaseException:
            await conn.close()
            raise

    async def queue_depth(self, topic: str, group: str) -> QueueDepth | None:
        """The ready count of ``group``'s queue for ``topic`` (unacked: ``None``)."""
        return await self.probe.depth(topic, group)

    async def close(self) -> None:
        """Drop the depth probe's connection."""
        self.probe.close()

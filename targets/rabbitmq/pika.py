"""``--amqp-client aio-pika``: what an aio-pika application sees.

Publishers call ``Exchange.publish`` for every message (with confirms, up to
``--confirm-window`` of them in flight as tasks, as an application gathering publishes
would); subscribers consume with a callback per message and ack as ``--amqp-ack`` says
(``each`` is ``message.ack()`` per message, what ``async with message.process()`` does).
The layout (exchanges, queues, flags) is the fast path's, so the two differ only in the
client.
"""

from __future__ import annotations

import asyncio
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

from msgbench.api.target import Client, Publisher, Sink, Subscription, TargetError
from msgbench.targets.rabbitmq.layout import Layout
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


class PikaClient(Client):
    """aio-pika publishers and subscribers on the fast path's layout."""

    def __init__(self, url: AmqpUrl, layout: Layout) -> None:
        self.url = url
        self.layout = layout

    async def publisher(self, pub_id: int) -> Publisher:
        """A connection and channel per publisher (confirms on with a window)."""
        conn, _, exchanges = await _open(self.url, self.layout,
                                         confirms=bool(self.layout.confirm_window))
        return PikaPublisher(conn, exchanges, self.layout)

    async def subscribe(self, sub_id: int, topics: Sequence[str], sink: Sink,
                        group: str | None = None) -> Subscription:
        """The subscriber's queue (see the layout), bound to its topics, consumed."""
        if group is not None:  # the shared pattern: Layout.shared_queue, not built yet
            raise TargetError("rabbitmq does not do shared groups yet (fan-out only)")
        layout = self.layout
        conn, ch, exchanges = await _open(self.url, layout)
        try:
            if layout.prefetch:
                await ch.set_qos(prefetch_count=layout.prefetch)
            spec = layout.subscriber_queue(sub_id)
            queue = await ch.declare_queue(spec.name or None, durable=spec.durable,
                                           exclusive=spec.exclusive,
                                           auto_delete=spec.auto_delete,
                                           arguments=spec.arguments or None)
            for t in topics:
                await queue.bind(exchanges[layout.exchange(t)], layout.routing_key(t))
            sub = PikaSubscription(conn, queue, sink, layout)
            sub.tag = await queue.consume(sub.on_message, no_ack=layout.ack == "auto")
        except BaseException:
            await conn.close()
            raise
        return sub

"""A lean AMQP 0-9-1 connection on asyncio for the fast client path.

aiormq marshals every publish through a lock, a queue and a future and starts a task per
delivered message: about 6,000 messages/s end to end on the development machine, so it
would measure itself, not RabbitMQ. This connection does the handshake and the
synchronous methods with pamqp (aiormq's codec), writes whole blocks of publishes, and
parses whole socket reads of deliveries (:mod:`msgbench.targets.rabbitmq.frames`).

One connection carries one channel (number 1): a publisher, a subscriber or later a
requester each open their own, as the Redis paths do. Heartbeats are switched off
(loopback; a dead broker closes the socket); a lost connection is reported through
``on_lost`` once.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import unquote, urlsplit

from pamqp import commands
from pamqp.base import Frame
from pamqp.common import FieldTable

from msgbench.targets.rabbitmq.frames import (
    DeliverySink,
    FrameError,
    Shape,
    method_frame,
    parse,
)

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
CHANNEL = 1
FRAME_MAX = 131072
"""The largest frame we accept (RabbitMQ's default); a broker may ask for less."""
CONNECT_TIMEOUT_S = 5.0
CALL_TIMEOUT_S = 10.0
"""A synchronous method (declare, bind, consume) not answered within this fails."""
ACCESS_REFUSED = 403
_ACK = struct.Struct(">BHIHHQBB")
"""A ``Basic.Ack`` method frame: head, class, method, delivery tag, multiple bit, end."""
M = TypeVar("M", bound=Frame)


class AmqpError(Exception):
    """The broker closed the connection or channel, or the socket went away."""


class AccessRefused(AmqpError):
    """The broker refused the login (wrong user, password or vhost permissions)."""


@dataclass(frozen=True)
class AmqpUrl:
    """``amqp://user:pass@host:port/vhost`` taken apart (``amqps://`` for TLS)."""

    host: str
    port: int
    user: str
    password: str
    vhost: str
    tls: bool

    def display(self) -> str:
        """The URL without the password, for messages and results."""
        scheme = "amqps" if self.tls else "amqp"
        vhost = "" if self.vhost == "/" else self.vhost
        return f"{scheme}://{self.user}:***@{self.host}:{self.port}/{vhost}"


def parse_url(url: str) -> AmqpUrl:
    """Parse an AMQP URI (RabbitMQ's rules: no path = vhost ``/``, ``%2F`` is ``/``).

    Raises ValueError with a short reason.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("amqp", "amqps"):
        raise ValueError("the scheme must be amqp:// or amqps://")
    if not parts.hostname:
        raise ValueError("no host")
    try:
        port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
    except ValueError:
        raise ValueError("the port must be a number from 1 to 65535") from None
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if "/" in path:
        raise ValueError("the vhost must be one path segment (write / as %2F)")
    return AmqpUrl(parts.hostname, port, unquote(parts.username or "guest"),
                   unquote(parts.password or "guest"), unquote(path) if path else "/",
                   parts.scheme == "amqps")


def ack_frame(tag: int, multiple: bool) -> bytes:
    """``Basic.Ack`` on channel 1, packed by hand: it is sent once per socket read."""
    return _ACK.pack(1, CHANNEL, 13, 60, 80, tag, int(multiple), 0xCE)


def requeue_frame(tag: int) -> bytes:
    """``Basic.Nack`` of one delivery with requeue on channel 1: the broker delivers it
    again (to any consumer of its queue), flagged ``redelivered``."""
    return _ACK.pack(1, CHANNEL, 13, 60, 120, tag, 0b10, 0xCE)  # bits: multiple 0, requeue 1


class Consumer:
    """Receives a channel's deliveries; implemented by subscriptions."""

    def block(self, buf: bytes, first: int, count: int, shape: Shape) -> None:
        """See :meth:`~msgbench.targets.rabbitmq.frames.DeliverySink.block`."""
        raise NotImplementedError

    def one(self, body: bytes, tag: int, redelivered: bool = False) -> None:
        """See :meth:`~msgbench.targets.rabbitmq.frames.DeliverySink.one`."""
        raise NotImplementedError


class AmqpConnection(asyncio.Protocol, DeliverySink):
    """One AMQP connection with one channel (see the module docstring)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.frame_max = FRAME_MAX
        self.waiters: deque[tuple[type[Frame], asyncio.Future[Any]]] = deque()
        self.error: AmqpError | None = None
        self.paused = False
        self.drained: asyncio.Future[None] | None = None
        self.consumer: Consumer | None = None
        self.on_confirm: Callable[[int, bool, bool], None] | None = None
        """``(delivery tag, multiple, nack)`` for each publisher confirm."""
        self.on_lost: Callable[[str], None] | None = None
        self.on_cancel: Callable[[], None] | None = None
        """The broker cancelled our consumer (its queue was deleted, say)."""
        self.blocked: str | None = None
        """Why the broker blocks publishers (memory or disk alarm), while it does."""
        self.server: dict[str, Any] = {}

    # -- asyncio.Protocol ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the protocol header; the broker answers with ``Connection.Start``."""
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        # Connection.Start may come in the same loop turn as this call: wait for it already
        self.started = self._waiter(commands.Connection.Start)
        self.transport.write(PROTOCOL_HEADER)

    def data_received(self, data: bytes) -> None:
        """Parse every complete frame; keep the rest for the next read."""
        buf = self.buf + data if self.buf else data
        try:
            used = parse(buf, self, self.frame_max + 8)
        except (FrameError, ValueError) as exc:
            self._fail(AmqpError(f"bad frame from RabbitMQ: {exc}"))
            return
        self.buf = buf[used:]

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail what waits, wake a paused writer, tell ``on_lost`` once."""
        why = exc or "closed by the broker"
        reason = self.error or AmqpError(f"RabbitMQ connection lost: {why}")
        self._fail(reason)

    def pause_writing(self) -> None:
        """The kernel buffer is full (the broker reads no faster: flow control)."""
        self.paused = True

    def resume_writing(self) -> None:
        """Writes flow again."""
        self.paused = False
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)
        self.drained = None

    # -- frames from the broker ---------------------------------------------
    def block(self, buf: bytes, first: int, count: int, shape: Shape) -> None:
        """Deliveries go to the consumer."""
        if self.consumer is not None:
            self.consumer.block(buf, first, count, shape)

    def one(self, body: bytes, tag: int, redelivered: bool = False) -> None:
        """A delivery outside a run goes to the consumer."""
        if self.consumer is not None:
            self.consumer.one(body, tag, redelivered)

    def method(self, channel: int, value: Frame) -> None:
        """Asynchronous methods are handled here; anything else answers the oldest call."""
        if isinstance(value, commands.Basic.Ack | commands.Basic.Nack):
            if self.on_confirm is not None:
                self.on_confirm(value.delivery_tag, value.multiple,
                                isinstance(value, commands.Basic.Nack))
        elif isinstance(value, commands.Connection.Close):
            self._write(method_frame(0, commands.Connection.CloseOk()))
            if value.reply_code == ACCESS_REFUSED:
                self._fail(AccessRefused(value.reply_text))
            else:
                self._fail(AmqpError(f"RabbitMQ closed the connection: {value.reply_text}"))
        elif isinstance(value, commands.Channel.Close):
            self._write(method_frame(channel, commands.Channel.CloseOk()))
            cls = AccessRefused if value.reply_code == ACCESS_REFUSED else AmqpError
            self._fail(cls(f"RabbitMQ closed the channel: {value.reply_text}"))
        elif isinstance(value, commands.Basic.Cancel):
            if self.on_cancel is not None:
                self.on_cancel()
        elif isinstance(value, commands.Connection.Blocked):
            self.blocked = value.reason or "blocked"
        elif isinstance(value, commands.Connection.Unblocked):
            self.blocked = None
        elif self.waiters:
            kind, fut = self.waiters.popleft()
            if fut.done():
                return
            if isinstance(value, kind):
                fut.set_result(value)
            else:
                fut.set_exception(AmqpError(f"expected {kind.__name__}, got {value.name}"))
        else:
            self._fail(AmqpError(f"unexpected {value.name} from RabbitMQ"))

    # -- sending ------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def write(self, data: bytes) -> None:
        """Queue bytes for the broker; raises :class:`AmqpError` once the connection failed."""
        if self.error is not None:
            raise self.error
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the kernel buffer is full; raise if the connection fails meanwhile."""
        while self.paused and self.error is None:
            if self.drained is None:
                self.drained = asyncio.get_running_loop().create_future()
            await asyncio.shield(self.drained)
        if self.error is not None:
            raise self.error

    def send(self, method: Frame, channel: int = CHANNEL) -> None:
        """Send a method that has no reply (``Basic.Ack``, ``nowait`` declarations ...)."""
        self.write(method_frame(channel, method))

    async def call(self, method: Frame, reply: type[M], channel: int = CHANNEL,
                   timeout: float = CALL_TIMEOUT_S) -> M:
        """Send a synchronous method and return the broker's answer of type ``reply``."""
        fut = self._waiter(reply)
        self.write(method_frame(channel, method))
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            raise AmqpError(f"no {reply.__name__} within {timeout:g} s") from None

    def _waiter(self, reply: type[M]) -> asyncio.Future[M]:
        """Register for the next synchronous reply, before anything can bring it."""
        fut: asyncio.Future[M] = asyncio.get_running_loop().create_future()
        self.waiters.append((reply, fut))
        return fut

    # -- life cycle ---------------------------------------------------------
    def _fail(self, error: AmqpError) -> None:
        first = self.error is None
        if first:
            self.error = error
        while self.waiters:
            _, fut = self.waiters.popleft()
            if not fut.done():
                fut.set_exception(self.error or error)
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)
        if self.transport is not None:
            self.transport.close()
        if first and self.on_lost is not None:
            self.on_lost(str(error))

    def close(self) -> None:
        """Close politely and at once (we do not wait for ``Connection.CloseOk``)."""
        if self.error is None:
            self.error = AmqpError("connection closed by msgbench")
            self.on_lost = None
            self._write(method_frame(0, commands.Connection.Close(200, "bye", 0, 0)))
        if self.transport is not None:
            self.transport.close()

    async def _handshake(self, url: AmqpUrl, timeout: float) -> None:
        start = await asyncio.wait_for(self.started, timeout)
        self.server = dict(start.server_properties or {})
        caps: FieldTable = {"publisher_confirms": True, "consumer_cancel_notify": True,
                "authentication_failure_close": True, "connection.blocked": True,
                "basic.nack": True}
        tune_fut = self._waiter(commands.Connection.Tune)
        self.send(commands.Connection.StartOk(
            client_properties={"product": "msgbench", "capabilities": caps},
            mechanism="PLAIN", response=f"\0{url.user}\0{url.password}"), channel=0)
        tune = await asyncio.wait_for(tune_fut, timeout)
        self.frame_max = min(FRAME_MAX, tune.frame_max or FRAME_MAX)
        self.send(commands.Connection.TuneOk(tune.channel_max, self.frame_max, 0), channel=0)
        await self.call(commands.Connection.Open(virtual_host=url.vhost),
                        commands.Connection.OpenOk, channel=0, timeout=timeout)
        await self.call(commands.Channel.Open(), commands.Channel.OpenOk, timeout=timeout)


async def connect(url: AmqpUrl, timeout: float = CONNECT_TIMEOUT_S) -> AmqpConnection:
    """Open a connection and its channel; raises :class:`AmqpError` with one line."""
    loop = asyncio.get_running_loop()
    ctx = ssl.create_default_context() if url.tls else None
    try:
        _, conn = await asyncio.wait_for(loop.create_connection(
            AmqpConnection, url.host, url.port, ssl=ctx,
            server_hostname=url.host if ctx else None), timeout)
    except (OSError, TimeoutError) as exc:
        raise AmqpError(f"cannot reach RabbitMQ at {url.display()}: {exc or 'timeout'}"
                        ) from None
    try:
        await conn._handshake(url, timeout)
    except TimeoutError:
        conn.close()
        raise AmqpError(f"RabbitMQ at {url.display()} did not finish the handshake "
                        f"within {timeout:g} s") from None
    except AccessRefused as exc:
        conn.close()
        raise AccessRefused(f"RabbitMQ at {url.display()} refused the login: {exc}") from None
    except AmqpError as exc:
        conn.close()
        if "connection lost" in str(exc):  # the broker drops a refused login if it cannot say
            raise AccessRefused(f"RabbitMQ at {url.display()} closed the connection during "
                                "the login (wrong user, password or vhost?)") from None
        raise AmqpError(f"RabbitMQ at {url.display()}: {exc}") from None
    return conn

"""The worker side of the ``ws`` target: WebSocket publishers and subscribers.

See :mod:`msgbench.targets.ws.target` for the design (rooms as topics, the join
acknowledgement, which client uses which server).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections.abc import Iterable, Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from msgbench.api.target import (
    PAYLOAD_FIRST_BYTE_MAX,
    Client,
    Publisher,
    Sink,
    Subscription,
    TargetError,
)

ACK_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 1.0
CLIENT_MAX_SIZE = 16 * 1024 * 1024
PUB_WRITE_LIMIT = 256 * 1024
"""Bytes a publisher may have unsent before publish() waits (backpressure)."""
READ_YIELD_BYTES = 64 * 1024
"""A read this large means the socket is saturated: let other work run (_yield_reading)."""
PLACEMENTS = ("spread", "cross")
"""Which server each client uses; see :func:`server_for_pub` and :func:`server_for_sub`."""
_BINARY = Opcode.BINARY
_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")


def server_for_pub(pub_id: int, servers: int, placement: str) -> int:
    """Index of the chat server publisher ``pub_id`` connects to (module docstring)."""
    return 0 if placement == "cross" else pub_id % servers


def server_for_sub(sub_id: int, servers: int, placement: str) -> int:
    """Index of the chat server subscriber ``sub_id`` connects to (module docstring)."""
    if placement == "cross":
        return 1 + sub_id % (servers - 1)
    return (sub_id + 1) % servers


def _closed_reason(conn: ClientConnection, server: int) -> str:
    code, reason = conn.close_code, conn.close_reason
    if code is None or code == 1006:
        return f"chat server {server} dropped the connection (no close frame)"
    return f"chat server {server} closed the connection: {code} {reason}".rstrip()


def _yield_reading(conn: Any) -> None:
    """Stop reading ``conn`` until the event loop's next turn.

    libuv reads a busy socket up to 32 times per turn; with a few dozen saturated
    connections one turn takes seconds and timers (the worker's reports) starve.
    """
    transport = conn.transport
    transport.pause_reading()
    conn.loop.call_soon(_resume, transport)


def _resume(transport: Any) -> None:
    if not transport.is_closing():
        transport.resume_reading()


_FRAME_STARTS = (b"\x81", b"\x82", b"\x88", b"\x89", b"\x8a")
"""First bytes of the unfragmented frames the chat server sends: text, binary, close, ping,
pong. All are above PAYLOAD_FIRST_BYTE_MAX, the most a payload may start with (the API's
guarantee), so a payload is never taken for a frame; nothing else of a payload is read."""
assert all(s[0] > PAYLOAD_FIRST_BYTE_MAX for s in _FRAME_STARTS)


class _SubConnection(ClientConnection):
    """Binary frames go straight to the sink, one ``deliver`` per socket read.

    Until the join is confirmed websockets parses everything. Then, once its parser
    sits between frames, :meth:`data_received` cuts complete unfragmented binary
    frames out of the stream itself (the chat server neither masks nor fragments
    what it relays) and hands every other complete frame (ping, close, text) to
    websockets, so its protocol state stays exact. websockets' general parser costs
    about as much per frame as the server's whole relay; this way the client side is
    not what limits the measurement.
    """

    sink: Sink | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batch: list[bytes] = []
        self._joined = False
        self._fast = False
        self._buf = b""

    def process_event(self, event: Any) -> None:
        if type(event) is Frame and event.opcode is _BINARY and event.fin:
            self._batch.append(bytes(event.data))
        else:
            super().process_event(event)

    def joined(self) -> None:
        """The join was confirmed: the fast path may take over at the next frame boundary."""
        self._joined = True

    def data_received(self, data: bytes) -> None:
        if not self._fast:
            # websockets' parser may have taken a frame's header and wait for its payload
            # with an empty buffer; so switch only where the new bytes start like a frame
            # (FIN + opcode). Mid-frame they start with payload, whose first byte is never
            # one of these (PAYLOAD_FIRST_BYTE_MAX).
            if not (self._joined and not self.protocol.reader.buffer
                    and self.protocol.state is State.OPEN and data[:1] in _FRAME_STARTS):
                super().data_received(data)
                self._flush()
                return
            self._fast = True
        buf = self._buf + data if self._buf else data
        n = len(buf)
        pos = 0
        batch = self._batch
        while pos + 2 <= n:
            b1 = buf[pos + 1]
            size = b1 & 0x7F
            head = 2
            if size == 126:
                if pos + 4 > n:
                    break
                size = _U16.unpack_from(buf, pos + 2)[0]
                head = 4
            elif size == 127:
                if pos + 10 > n:
                    break
                size = _U64.unpack_from(buf, pos + 2)[0]
                head = 10
            if size > CLIENT_MAX_SIZE or b1 & 0x80:
                # Not what the chat server sends: let websockets fail the connection.
                self._fast = False
                self._buf = b""
                self._flush()
                super().data_received(buf[pos:])
                return
            end = pos + head + size
            if end > n:
                break
            if buf[pos] == 0x82:
                batch.append(buf[pos + head:end])
            else:
                self._flush()  # keep the order: what came before goes first
                super().data_received(buf[pos:end])
            pos = end
        self._buf = buf[pos:]
        self._flush()
        if len(data) >= READ_YIELD_BYTES:
            _yield_reading(self)

    def _flush(self) -> None:
        if self._batch:
            batch, self._batch = self._batch, []
            if self.sink is not None:
                self.sink.deliver(batch)


async def _connect(server: int, url: str, **kwargs: Any) -> ClientConnection:
    """Open a WebSocket to chat server ``server``; failures become one ConnectionError line."""
    try:
        return await connect(url, compression=None, ping_interval=None,
                             max_size=CLIENT_MAX_SIZE, **kwargs)
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise ConnectionError(f"cannot connect to chat server {server} at {url}: {why}"
                              ) from None


class _WsSubscription(Subscription):
    def __init__(self, conns: list[tuple[_SubConnection, int]], sink: Sink) -> None:
        self.conns = conns
        self.sink = sink
        self.closing = False
        self.watchers = [asyncio.ensure_future(self._watch(c, s)) for c, s in conns]

    async def _watch(self, conn: _SubConnection, server: int) -> None:
        await conn.wait_closed()
        if not self.closing:
            self.sink.disconnected(_closed_reason(conn, server))

    async def close(self) -> None:
        self.closing = True
        for w in self.watchers:
            w.cancel()
        for conn, _ in self.conns:
            conn.sink = None  # closed means nothing more is delivered, answered or not
        await close_all(conn for conn, _ in self.conns)


async def close_all(conns: Iterable[ClientConnection]) -> None:
    """Close every connection at once, each given :data:`CLOSE_TIMEOUT_S` for the close
    handshake: a stopped server answers none, and one after another would hold a run's
    end up for that long per connection."""

    async def one(conn: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.close(), CLOSE_TIMEOUT_S)
        if isinstance(conn, _SubConnection):
            _abandon(conn)

    await asyncio.gather(*(one(conn) for conn in conns))


def _abandon(conn: _SubConnection) -> None:
    """Stop ``conn`` delivering and drop its socket (a no-op once it is closed)."""
    conn.sink = None
    if not conn.transport.is_closing():
        conn.transport.abort()


class _WsPublisher(Publisher):
    def __init__(self, url: str, server: int) -> None:
        self.url = url
        self.server = server
        self.conns: dict[str, ClientConnection] = {}

    async def _conn(self, topic: str) -> ClientConnection:
        conn = self.conns.get(topic)
        if conn is None:
            conn = await _connect(self.server, f"{self.url}?room={topic}&listen=0",
                                  write_limit=PUB_WRITE_LIMIT)
            self.conns[topic] = conn
        return conn

    async def publish(self, topic: str, payloads: Sequence[bytes]) -> None:
        """One binary frame per message, written in one go; waits while the socket is full."""
        conn = await self._conn(topic)
        proto = conn.protocol
        if proto.state is not State.OPEN:
            raise ConnectionError(_closed_reason(conn, self.server))
        send = proto.send_binary
        for p in payloads:
            send(p)
        # One write for the batch: websockets would write (and send) each frame alone.
        conn.transport.write(b"".join(proto.data_to_send()))
        if conn.paused:
            await conn.drain()

    async def close(self) -> None:
        await close_all(self.conns.values())


class WsClient(Client):
    """WebSocket clients of one worker; ``urls`` are the chat servers' /ws endpoints."""

    def __init__(self, urls: Sequence[str], placement: str) -> None:
        self.urls = list(urls)
        self.placement = placement

    async def publisher(self, pub_id: int) -> Publisher:
        i = server_for_pub(pub_id, len(self.urls), self.placement)
        return _WsPublisher(self.urls[i], i)

    async def subscribe(self, sub_id: int, topics: Sequence[str], sink: Sink,
                        group: str | None = None) -> Subscription:
        """Join each topic's room; returns once the server confirmed every join."""
        i = server_for_sub(sub_id, len(self.urls), self.placement)
        conns: list[tuple[_SubConnection, int]] = []
        try:
            for topic in topics:
                conns.append((await open_joined(i, self.urls[i], topic, sink), i))
        except BaseException:
            for c, _ in conns:  # a half-made subscription must not keep delivering
                _abandon(c)
            raise
        return _WsSubscription(conns, sink)


async def open_joined(server: int, url: str, topic: str, sink: Sink,
                      query: str = "", **kwargs: Any) -> _SubConnection:
    """A connection to ``url`` for room ``topic`` (with ``query``, ``&k=v`` ...) whose binary
    frames go to ``sink``, once the server confirmed it ("joined"); ``kwargs`` go to
    websockets' ``connect``. Raises
    :class:`TargetError` when it does not, ConnectionError when it cannot connect."""

    def factory(*args: Any, **kwargs: Any) -> _SubConnection:
        conn = _SubConnection(*args, **kwargs)
        conn.sink = sink  # before the first frame can arrive
        return conn

    conn = await _connect(server, f"{url}?room={topic}&ack=1{query}", create_connection=factory,
                          **kwargs)
    assert isinstance(conn, _SubConnection)
    try:
        try:
            joined = json.loads(await asyncio.wait_for(conn.recv(), ACK_TIMEOUT_S))
        except TimeoutError:
            raise TargetError(f"chat server {server} did not confirm room {topic!r}") from None
        if joined.get("type") != "joined":
            raise TargetError(f"chat server {server} sent {joined!r} instead of joining")
    except BaseException:
        _abandon(conn)
        raise
    conn.joined()
    return conn

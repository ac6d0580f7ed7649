"""Bridges that let several chat servers share messages: Redis pub/sub or a ZeroMQ mesh.

A bridge carries ``(room, batch)``: each message is one Redis PUBLISH / one
ZeroMQ message whose body is a kind byte (``t`` text, ``b`` binary) and the
message itself, so ``redis-cli PUBLISH msgbench-chat:lobby thello`` shows
"hello" to every page in the lobby.

* :class:`RedisBridge` speaks RESP itself (with hiredis' parser) on two
  connections: one writes PUBLISH commands without waiting for each reply
  (pipelined: a round trip per message would cap a server at a few thousand
  messages per second), one holds ``PSUBSCRIBE msgbench-chat:*``.
* :class:`ZmqBridge` binds a PUB socket and connects a SUB socket to every
  peer; ZeroMQ messages are ``[room, origin, body]`` and a server drops those
  that carry its own id, so nothing loops even if a server lists itself.

Losing a Redis connection is fatal for the server (``on_lost``): a chat
server that silently stopped sharing would look healthy and be wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast
from urllib.parse import unquote, urlsplit

import hiredis
import zmq

log = logging.getLogger("msgbench.chat")

Batch = list[tuple[bool, bytes]]
"""Messages as ``(is_text, data)`` in arrival order."""
OnMessages = Callable[[str, Batch], None]
OnLost = Callable[[str], None]

CHANNEL_PREFIX = b"msgbench-chat:"
CONNECT_TIMEOUT_S = 5.0
ZMQ_HWM = 100_000
"""Messages a PUB socket queues per peer before ZeroMQ drops (its default is 1,000)."""
ZMQ_MAX_READ = 4096
"""Messages taken from the SUB socket per loop turn, so clients are served meanwhile."""
_KIND_TEXT = 0x74  # "t"
_KIND_BINARY = 0x62  # "b"


class BridgeError(Exception):
    """The bridge cannot be set up; one line for the user."""


class Bridge(Protocol):
    """What the hub needs from a bridge."""

    def publish(self, room: str, batch: Batch) -> None:
        """Send ``batch`` to the other servers (and, for Redis, back to this one)."""

    def close(self) -> None:
        """Release sockets."""


def _body(is_text: bool, data: bytes) -> bytes:
    return (b"t" if is_text else b"b") + data


def _decode(body: bytes) -> tuple[bool, bytes] | None:
    if not body:
        return None
    kind = body[0]
    if kind == _KIND_BINARY:
        return False, body[1:]
    if kind == _KIND_TEXT:
        data = body[1:]
        try:
            data.decode()
        except UnicodeDecodeError:
            return None
        return True, data
    return None


def _cmd(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class _RespConnection(asyncio.Protocol):
    """One RESP connection; replies go to ``on_reply`` a socket read at a time."""

    def __init__(self, on_replies: Callable[[list[Any]], None], on_lost: OnLost) -> None:
        self.reader = hiredis.Reader()
        self.on_replies = on_replies
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        gets = self.reader.gets
        replies = []
        while (r := gets()) is not False:
            replies.append(r)
        if replies:
            self.on_replies(replies)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:
            self.on_lost(f"Redis closed the connection ({exc or 'EOF'})")

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()


MAX_BRIDGE_BACKLOG_BYTES = 64 * 1024 * 1024
"""PUBLISH bytes a server may have waiting for Redis before the bridge counts as lost."""


class RedisBridge:
    """Redis pub/sub bridge; see the module docstring."""

    def __init__(self, url: str, on_messages: OnMessages, on_lost: OnLost) -> None:
        self.url = url
        self.on_messages = on_messages
        self.on_lost = on_lost
        self.pub: _RespConnection | None = None
        self.sub: _RespConnection | None = None
        self._pending: asyncio.Future[Any] | None = None
        self._rooms: dict[bytes, str] = {}
        self.errors = 0

    async def start(self) -> None:
        """Connect both connections and subscribe; raises :class:`BridgeError` with one line."""
        url = urlsplit(self.url)
        try:
            host, port = url.hostname, url.port or 6379
        except ValueError as exc:
            raise BridgeError(f"invalid Redis URL {self.url!r}: {exc}") from None
        if url.scheme != "redis" or not host:
            raise BridgeError(f"the chat bridge needs a redis://host:port URL, got {self.url!r}")
        auth: tuple[bytes, ...] = ()
        if url.password:
            user = [unquote(url.username).encode()] if url.username else []
            auth = (b"AUTH", *user, unquote(url.password).encode())
        self.pub = await self._connect(host, port, self._pub_replies)
        self.sub = await self._connect(host, port, self._sub_replies)
        await self._ask(self.pub, [_cmd(*auth)] if auth else [], _cmd(b"PING"))
        await self._ask(self.sub, [_cmd(*auth)] if auth else [],
                        _cmd(b"PSUBSCRIBE", CHANNEL_PREFIX + b"*"))

    async def _connect(self, host: str, port: int, on_replies: Callable[[list[Any]], None]
                       ) -> _RespConnection:
        loop = asyncio.get_running_loop()
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: _RespConnection(on_replies, self._lost), host,
                                       port), CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise BridgeError(f"cannot reach Redis at {host}:{port}: "
                              f"{getattr(exc, 'strerror', None) or exc or 'timeout'}") from None
        return proto

    async def _ask(self, conn: _RespConnection, auth: list[bytes], command: bytes) -> None:
        self._pending = asyncio.get_running_loop().create_future()
        conn.write(b"".join([*auth, command]))
        try:
            reply = await asyncio.wait_for(self._pending, CONNECT_TIMEOUT_S)
        except TimeoutError:
            raise BridgeError(f"Redis at {self.url} did not answer") from None
        if isinstance(reply, hiredis.ReplyError):
            raise BridgeError(f"Redis at {self.url} refused: {reply}")

    def _settle(self, reply: Any) -> bool:
        """Hand a start-up reply to :meth:`_ask`; True when it was one."""
        p = self._pending
        if p is None or p.done():
            return False
        if (isinstance(reply, hiredis.ReplyError) or reply == b"PONG"
                or (isinstance(reply, list) and reply[:1] == [b"psubscribe"])):
            p.set_result(reply)
        return True  # AUTH's +OK: keep waiting for the command's own reply

    def _pub_replies(self, replies: list[Any]) -> None:
        for r in replies:
            if isinstance(r, hiredis.ReplyError):
                if not self._settle(r):
                    self.errors += 1
                    if self.errors == 1:
                        log.error("Redis refused a PUBLISH: %s", r)
            elif not isinstance(r, int):
                self._settle(r)

    def _sub_replies(self, replies: list[Any]) -> None:
        room: str | None = None
        batch: Batch = []
        prefix = len(CHANNEL_PREFIX)
        for r in replies:
            if type(r) is list and len(r) == 4 and r[0] == b"pmessage":
                channel = r[2]
                name = self._rooms.get(channel)
                if name is None:
                    name = self._rooms[channel] = channel[prefix:].decode(errors="replace")
                msg = _decode(r[3])
                if msg is None:
                    continue  # not from a chat server: not ours to relay
                if name != room:
                    if batch:
                        self.on_messages(room or "", batch)
                    room, batch = name, []
                batch.append(msg)
            else:
                self._settle(r)
        if batch and room is not None:
            self.on_messages(room, batch)

    def _lost(self, reason: str) -> None:
        if self._pending is not None and not self._pending.done():
            self._pending.set_exception(BridgeError(reason))
        else:
            self.on_lost(reason)

    def publish(self, room: str, batch: Batch) -> None:
        """PUBLISH each message; replies (subscriber counts) are read and discarded."""
        assert self.pub is not None
        if self.pub.transport is None or self.pub.transport.is_closing():
            return  # the bridge is lost and the server is shutting down (on_lost)
        waiting = self.pub.transport.get_write_buffer_size()
        if waiting > MAX_BRIDGE_BACKLOG_BYTES:
            # Redis cannot keep up: growing without bound would end in the OOM killer,
            # so the bridge is declared lost instead, loudly.
            self._lost(f"Redis is not keeping up: {waiting} bytes of PUBLISH waiting")
            return
        channel = CHANNEL_PREFIX + room.encode()
        self.pub.write(b"".join([_cmd(b"PUBLISH", channel, _body(t, d)) for t, d in batch]))

    def close(self) -> None:
        """Close both connections."""
        for conn in (self.pub, self.sub):
            if conn is not None:
                conn.close()


class ZmqBridge:
    """ZeroMQ PUB/SUB mesh bridge; see the module docstring."""

    def __init__(self, origin: str, bind: str, peers: Sequence[str],
                 on_messages: OnMessages) -> None:
        self.origin = origin.encode()
        self.bind = bind
        self.peers = tuple(peers)
        self.on_messages = on_messages
        self.ctx = zmq.Context()
        self.pub = self.ctx.socket(zmq.PUB)
        self.sub = self.ctx.socket(zmq.SUB)
        self._fd = -1

    def start(self) -> None:
        """Bind and connect; raises :class:`BridgeError` with one line."""
        for sock, opt in ((self.pub, zmq.SNDHWM), (self.sub, zmq.RCVHWM)):
            sock.setsockopt(opt, ZMQ_HWM)
            sock.setsockopt(zmq.LINGER, 0)
        try:
            self.pub.bind(self.bind)
        except zmq.ZMQError as exc:
            self.close()
            raise BridgeError(f"cannot bind the ZeroMQ bridge to {self.bind}: {exc}") from None
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        for peer in self.peers:
            try:
                self.sub.connect(peer)
            except zmq.ZMQError as exc:
                self.close()
                raise BridgeError(f"cannot connect the ZeroMQ bridge to {peer}: {exc}") from None
        loop = asyncio.get_running_loop()
        self._fd = int(self.sub.getsockopt(zmq.FD))
        loop.add_reader(self._fd, self._on_readable)
        loop.call_soon(self._on_readable)  # the FD is edge-triggered: look once now

    def _on_readable(self) -> None:
        recv = self.sub.recv_multipart
        origin = self.origin
        room: str | None = None
        batch: Batch = []
        n = 0
        while n < ZMQ_MAX_READ:
            try:
                parts = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            except zmq.ZMQError:
                return  # closed
            n += 1
            if len(parts) != 3 or parts[1] == origin:
                continue
            msg = _decode(parts[2])
            if msg is None:
                continue
            name = parts[0].decode(errors="replace")
            if name != room:
                if batch and room is not None:
                    self.on_messages(room, batch)
                room, batch = name, []
            batch.append(msg)
        if batch and room is not None:
            self.on_messages(room, batch)
        if n >= ZMQ_MAX_READ:
            # Edge-triggered: no new wake-up comes for what is already queued.
            asyncio.get_running_loop().call_soon(self._on_readable)

    def publish(self, room: str, batch: Batch) -> None:
        """Send each message to every peer; ZeroMQ drops beyond :data:`ZMQ_HWM` per peer."""
        send = self.pub.send_multipart
        head = [room.encode(), self.origin]
        for is_text, data in batch:
            with contextlib.suppress(zmq.Again):
                send([*head, _body(is_text, data)], zmq.NOBLOCK)

    def close(self) -> None:
        """Close the sockets and the context."""
        if self._fd >= 0:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._fd)
            self._fd = -1
        self.pub.close(0)
        self.sub.close(0)
        self.ctx.term()


async def open_bridge(kind: str, server_id: str, redis_url: str | None, zmq_bind: str | None,
                      zmq_peers: Sequence[str], on_messages: OnMessages, on_lost: OnLost
                      ) -> Bridge:
    """Build and start the bridge named ``kind`` (``redis`` or ``zmq``).

    Raises :class:`BridgeError` with one line when it cannot be set up.
    """
    if kind == "redis":
        if not redis_url:
            raise BridgeError("--bridge redis needs --redis-url redis://host:port")
        bridge = RedisBridge(redis_url, on_messages, on_lost)
        try:
            await bridge.start()
        except BaseException:
            bridge.close()
            raise
        return bridge
    if kind == "zmq":
        if not zmq_bind:
            raise BridgeError("--bridge zmq needs --zmq-bind tcp://127.0.0.1:PORT")
        zb = ZmqBridge(server_id, zmq_bind, zmq_peers, on_messages)
        zb.start()
        return zb
    raise BridgeError(f"unknown bridge {kind!r}: use none, redis or zmq")

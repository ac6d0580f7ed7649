"""Bridges that let several chat servers share messages: Redis pub/sub or a ZeroMQ mesh.

A bridge carries ``(room, batch)``: each message is one Redis PUBLISH / one
ZeroMQ message whose body is a kind byte (``t`` text, ``b`` binary) and the
message itself, so ``redis-cli PUBLISH msgbench-chat:lobby thello`` shows
"hello" to every page in the lobby.

* :class:`RedisBridge` speaks RESP through msgbench's own client
  (:mod:`msgbench.kit.resp`) on two connections: one writes PUBLISH commands
  without waiting for each reply (pipelined: a round trip per message would cap
  a server at a few thousand messages per second), one holds
  ``PSUBSCRIBE msgbench-chat:*``.
* :class:`ZmqBridge` binds a PUB socket and connects a SUB socket to every
  peer; ZeroMQ messages are ``[room, origin, body]`` and a server drops those
  that carry its own id, so nothing loops even if a server lists itself.

Request/reply (:mod:`msgbench.targets.ws.chat_rpc`) adds directed bodies: on
Redis a server also subscribes to ``msgbench-chat-rpc:ID`` (its own) and
``msgbench-chat-rpc`` (to all); on ZeroMQ they are ``[RPC_TAG, dest, origin,
body]``, ``dest`` empty for all, and a server drops those for another server.

Losing a Redis connection, or a Redis that stops answering, is fatal for the
server (``on_lost``, reported once): a chat server that silently stopped sharing
would look healthy and be wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

import hiredis
import zmq

from msgbench.kit.redis_cluster import connect, parse_url
from msgbench.kit.resp import RespConnection, RespError, command
from msgbench.kit.urls import mask_url

log = logging.getLogger("msgbench.chat")

Batch = list[tuple[bool, bytes]]
"""Messages as ``(is_text, data)`` in arrival order."""
OnMessages = Callable[[str, Batch], None]
OnLost = Callable[[str], None]
OnRpc = Callable[[list[bytes]], None]

CHANNEL_PREFIX = b"msgbench-chat:"
RPC_CHANNEL = b"msgbench-chat-rpc"
"""Request/reply bodies for every server; ``RPC_CHANNEL + b":" + id`` for one."""
RPC_TAG = b"\x00rpc"
"""First part of a ZeroMQ request/reply message: no room name starts with a NUL."""
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

    def send_rpc(self, dest: str | None, bodies: list[bytes]) -> None:
        """Send request/reply ``bodies`` to server ``dest`` (``None``: to every server)."""

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


BRIDGE_CHECK_S = 1.0
"""How often the Redis bridge asks Redis whether it is still there (PING)."""
BRIDGE_STALL_S = 3.0
"""How long Redis may leave a PING unanswered before the bridge counts as stalled: a
stopped or hung Redis keeps its sockets open, so only silence shows it."""
MAX_BRIDGE_BACKLOG_BYTES = 64 * 1024 * 1024
"""PUBLISH bytes a server may have waiting for Redis before the bridge counts as lost."""


class _PatternConnection(RespConnection):
    """The bridge's ``PSUBSCRIBE``d connection (:mod:`msgbench.kit.resp`): pattern messages
    go to ``on_messages`` a socket read at a time, grouped by room; other replies answer
    calls (``AUTH``, ``PSUBSCRIBE``) in order."""

    def __init__(self, on_messages: OnMessages, on_rpc: OnRpc | None = None) -> None:
        super().__init__()
        self.on_messages = on_messages
        self.on_rpc = on_rpc
        self._rooms: dict[bytes, str] = {}

    def data_received(self, data: bytes) -> None:
        """Parse what one read brought; relay the chat messages, answer the calls."""
        self.reader.feed(data)
        gets = self.reader.gets
        room: str | None = None
        batch: Batch = []
        rpc: list[bytes] = []
        prefix = len(CHANNEL_PREFIX)
        while True:
            try:
                r = gets()
            except hiredis.ProtocolError as exc:
                self._protocol_error(exc)
                break
            if r is False:
                break
            if type(r) is list and len(r) == 4 and r[0] == b"pmessage":
                channel = r[2]
                name = self._rooms.get(channel)
                if name is None:
                    name = self._rooms[channel] = channel[prefix:].decode(errors="replace")
                msg = _decode(r[3])
                if msg is None:
                    continue  # not from a chat server: not ours to relay
                if name != room:
                    if batch and room is not None:
                        self.on_messages(room, batch)
                    room, batch = name, []
                batch.append(msg)
            elif type(r) is list and len(r) == 3 and r[0] == b"message":
                rpc.append(r[2])
            else:
                self._reply(r)
        if batch and room is not None:
            self.on_messages(room, batch)
        if rpc and self.on_rpc is not None:
            self.on_rpc(rpc)


class RedisBridge:
    """Redis pub/sub bridge; see the module docstring.

    Built on msgbench's RESP client (:mod:`msgbench.kit.resp`) and URL parser
    (:func:`msgbench.kit.redis_cluster.parse_url`), so AUTH, TLS, databases and the
    masking of passwords in messages are those of the Redis targets. Loss of the bridge
    (a closed connection, Redis refusing PUBLISH, a backlog past
    :data:`MAX_BRIDGE_BACKLOG_BYTES`, no answer to PING within :data:`BRIDGE_STALL_S`)
    is reported to ``on_lost`` once.
    """

    def __init__(self, url: str, on_messages: OnMessages, on_lost: OnLost,
                 server_id: str = "", on_rpc: OnRpc | None = None) -> None:
        self.url = url
        self.on_messages = on_messages
        self.on_lost = on_lost
        self.server_id = server_id
        self.on_rpc = on_rpc
        self.pub: RespConnection | None = None
        self.sub: _PatternConnection | None = None
        self.lost: str | None = None
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect both connections and subscribe; raises :class:`BridgeError` with one line."""
        try:
            addr = parse_url(self.url)
        except ValueError as exc:
            raise BridgeError(str(exc)) from None
        try:
            self.pub = await connect(addr, RespConnection, CONNECT_TIMEOUT_S)
            self.sub = await connect(
                addr, lambda: _PatternConnection(self.on_messages, self.on_rpc),
                CONNECT_TIMEOUT_S)
            await self.pub.call("PING", timeout=CONNECT_TIMEOUT_S)
            await self.sub.call("PSUBSCRIBE", CHANNEL_PREFIX + b"*", timeout=CONNECT_TIMEOUT_S)
            if self.on_rpc is not None:
                for channel in (RPC_CHANNEL, _rpc_channel(self.server_id)):
                    await self.sub.call("SUBSCRIBE", channel, timeout=CONNECT_TIMEOUT_S)
        except RespError as exc:
            self.close()
            raise BridgeError(mask_url(str(exc))) from None
        self.pub.on_lost = self._lost
        self.sub.on_lost = self._lost
        self._watch = asyncio.get_running_loop().create_task(self._watchdog())

    async def _watchdog(self) -> None:
        """PING Redis every :data:`BRIDGE_CHECK_S`; silence past :data:`BRIDGE_STALL_S` is a
        stall. The PING queues behind the pipelined PUBLISHes, so a Redis that falls that
        far behind counts as stalled too."""
        assert self.pub is not None
        while self.lost is None:
            await asyncio.sleep(BRIDGE_CHECK_S)
            try:
                await self.pub.call("PING", timeout=BRIDGE_STALL_S)
            except RespError as exc:
                if "did not answer" in str(exc):
                    self._lost(f"Redis did not answer for {BRIDGE_STALL_S:g} s (stopped or hung?)")
                else:
                    self._lost(str(exc))
                return

    def _lost(self, reason: str) -> None:
        """Report the first loss only: everything after it is a consequence."""
        if self.lost is None:
            self.lost = mask_url(reason)
            self.on_lost(self.lost)

    def _writer(self) -> RespConnection | None:
        """The PUBLISH connection; None once the bridge is lost, which it is now if Redis
        has more than MAX_BRIDGE_BACKLOG_BYTES waiting (growing on would end in OOM)."""
        pub = self.pub
        if self.lost is not None or pub is None:
            return None  # the bridge is lost and the server is shutting down (on_lost)
        transport = pub.transport
        waiting = transport.get_write_buffer_size() if transport is not None else 0
        if waiting > MAX_BRIDGE_BACKLOG_BYTES:
            self._lost(f"Redis is not keeping up: {waiting} bytes of PUBLISH waiting")
            return None
        return pub

    def publish(self, room: str, batch: Batch) -> None:
        """PUBLISH each message; the replies (subscriber counts) are only counted."""
        pub = self._writer()
        if pub is None:
            return
        channel = CHANNEL_PREFIX + room.encode()
        try:
            pub.send_counted(b"".join([command(b"PUBLISH", channel, _body(t, d))
                                       for t, d in batch]), len(batch))
        except RespError as exc:  # closed, or Redis refused an earlier PUBLISH
            self._lost(f"Redis refused a PUBLISH: {exc}" if pub.lost is None else str(exc))

    def send_rpc(self, dest: str | None, bodies: list[bytes]) -> None:
        """PUBLISH each body to ``dest``'s own channel (or the one for all), pipelined."""
        pub = self._writer()
        if pub is None:
            return
        channel = RPC_CHANNEL if dest is None else _rpc_channel(dest)
        try:
            pub.send_counted(b"".join([command(b"PUBLISH", channel, b) for b in bodies]),
                             len(bodies))
        except RespError as exc:
            self._lost(f"Redis refused a PUBLISH: {exc}" if pub.lost is None else str(exc))

    def close(self) -> None:
        """Stop the watchdog and close both connections."""
        if self._watch is not None:
            self._watch.cancel()
        for conn in (self.pub, self.sub):
            if conn is not None:
                conn.close()


def _rpc_channel(server_id: str) -> bytes:  # a server's own request/reply channel
    return RPC_CHANNEL + b":" + server_id.encode()


class ZmqBridge:
    """ZeroMQ PUB/SUB mesh bridge; see the module docstring."""

    def __init__(self, origin: str, bind: str, peers: Sequence[str],
                 on_messages: OnMessages, on_rpc: OnRpc | None = None) -> None:
        self.origin = origin.encode()
        self.bind = bind
        self.peers = tuple(peers)
        self.on_messages = on_messages
        self.on_rpc = on_rpc
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
        rpc: list[bytes] = []
        n = 0
        while n < ZMQ_MAX_READ:
            try:
                parts = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            except zmq.ZMQError:
                return  # closed
            n += 1
            if len(parts) == 4 and parts[0] == RPC_TAG:
                if parts[2] != origin and parts[1] in (origin, b""):
                    rpc.append(parts[3])
                continue
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
        if rpc and self.on_rpc is not None:
            self.on_rpc(rpc)
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

    def send_rpc(self, dest: str | None, bodies: list[bytes]) -> None:
        """Send each body to server ``dest`` (every peer gets it; the others drop it)."""
        send = self.pub.send_multipart
        head = [RPC_TAG, b"" if dest is None else dest.encode(), self.origin]
        for body in bodies:
            with contextlib.suppress(zmq.Again):
                send([*head, body], zmq.NOBLOCK)

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
                      zmq_peers: Sequence[str], on_messages: OnMessages, on_lost: OnLost,
                      on_rpc: OnRpc | None = None) -> Bridge:
    """Build and start the bridge named ``kind`` (``redis`` or ``zmq``); request/reply
    bodies for this server go to ``on_rpc``.

    Raises :class:`BridgeError` with one line when it cannot be set up.
    """
    if kind == "redis":
        if not redis_url:
            raise BridgeError("--bridge redis needs --redis-url redis://host:port")
        bridge = RedisBridge(redis_url, on_messages, on_lost, server_id, on_rpc)
        try:
            await bridge.start()
        except BaseException:
            bridge.close()
            raise
        return bridge
    if kind == "zmq":
        if not zmq_bind:
            raise BridgeError("--bridge zmq needs --zmq-bind tcp://127.0.0.1:PORT")
        zb = ZmqBridge(server_id, zmq_bind, zmq_peers, on_messages, on_rpc)
        zb.start()
        return zb
    raise BridgeError(f"unknown bridge {kind!r}: use none, redis or zmq")

"""The heart of the chat server: rooms and the broadcast that never waits for a client.

:class:`ChatConnection` hands a client's messages over a socket read at a time;
:class:`Hub` relays them to the members of the room (and to the bridge) by
writing prepared frames to each member's transport, dropping a member whose
outgoing buffer passes the bound. See :mod:`msgbench.targets.ws.chat_server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import struct
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from msgbench.targets.ws.chat_bridge import Batch, Bridge
from msgbench.targets.ws.chat_rpc import RPC_KINDS, RpcRouter, RpcStats, new_conn_id

log = logging.getLogger("msgbench.chat")

DEFAULT_ROOM = "lobby"
SLOW_CLOSE_GRACE_S = 0.5
"""How long a client dropped for being slow (or at shutdown) has to take its close frame
before the TCP connection is aborted: it is behind by a full buffer, so it rarely can."""
SLOW_CLOSE_CODE = 1008
READ_YIELD_BYTES = 64 * 1024
LOG_SUMMARY_S = 5.0
"""After the first line of a kind (a slow client dropped, a bad frame), how long further
ones are only counted before one line says how many there were."""
_OP_TEXT = Opcode.TEXT
_OP_BINARY = Opcode.BINARY
_OP_CONT = Opcode.CONT
_H16 = struct.Struct("!BBH")
_H64 = struct.Struct("!BBQ")


@dataclass(kw_only=True)
class Stats(RpcStats):
    """Counters served at ``GET /stats`` (with the request/reply ones of :class:`RpcStats`)."""

    server_id: str
    bridge: str
    connected: int = 0
    connections_total: int = 0
    slow_disconnects: int = 0
    protocol_errors: int = 0
    messages_in: int = 0
    messages_out: int = 0
    bridge_out: int = 0
    bridge_in: int = 0
    origins_refused: int = 0


def frame_bytes(batch: Batch) -> bytes:
    """Server-to-client frames (unmasked, unfragmented) for ``batch``, built once per broadcast.

    Serialising once and writing the same bytes to every member is what keeps the
    broadcast cheap; it needs compression off, which the server ensures.
    """
    parts: list[bytes] = []
    append = parts.append
    for is_text, data in batch:
        b0 = 0x81 if is_text else 0x82
        n = len(data)
        if n < 126:
            append(bytes((b0, n)))
        elif n < 65536:
            append(_H16.pack(b0, 126, n))
        else:
            append(_H64.pack(b0, 127, n))
        append(data)
    return b"".join(parts)


class Throttled:
    """One log line for the first event of a kind, then one line with the count per
    :data:`LOG_SUMMARY_S`: a thousand slow clients must not become a thousand lines."""

    def __init__(self, logger: logging.Logger, window_s: float = LOG_SUMMARY_S) -> None:
        self.log = logger
        self.window_s = window_s
        self._more: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args: object) -> None:
        """Log ``message`` if no ``kind`` event was logged in the current window, else count
        it. Needs a running event loop (for the summary line)."""
        more = self._more.get(kind)
        if more is not None:
            self._more[kind] = more + 1
            return
        self.log.warning(message, *args)
        self._more[kind] = 0
        asyncio.get_running_loop().call_later(self.window_s, self._summary, kind)

    def _summary(self, kind: str) -> None:
        more = self._more.pop(kind, 0)
        if more:
            self.log.warning("... and %d more %s in the last %g s", more, kind, self.window_s)
            self._more[kind] = 0  # still busy: keep counting instead of logging each
            asyncio.get_running_loop().call_later(self.window_s, self._summary, kind)


def _release_memory() -> None:
    """Hand freed heap memory back to the OS (glibc ``malloc_trim``): a client dropped for
    a full buffer leaves megabytes of freed buffers that glibc would otherwise keep."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class ChatConnection(ServerConnection):
    """A client connection that hands its messages to the hub a socket read at a time.

    Data frames bypass websockets' receive queue: one read becomes one batch and one
    broadcast, instead of one coroutine wake-up per message.
    """

    hub: Hub
    room: str = DEFAULT_ROOM
    listen: bool = True
    ack: bool = False
    answers: bool = False
    """A responder of its room (``respond=1``): gets the room's requests, not its messages."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dropped = False
        """Disconnected for a full buffer (its memory is released when it is gone)."""
        self.conn_id = new_conn_id()
        """Its part of the return address of the requests it sends (:mod:`.chat_rpc`)."""
        self._batch: Batch = []
        self._rpc: list[bytes] = []
        self._frag_text = False
        self._frag: list[bytes] = []

    def process_event(self, event: Any) -> None:
        if not isinstance(event, Frame):
            super().process_event(event)  # the opening handshake
            return
        op = event.opcode
        if op is _OP_BINARY or op is _OP_TEXT:
            if event.fin:
                self._text_or_binary(op is _OP_TEXT, bytes(event.data))
            else:
                self._frag_text = op is _OP_TEXT
                self._frag = [bytes(event.data)]
        elif op is _OP_CONT:
            # The protocol enforces max_size over all fragments and their order.
            self._frag.append(bytes(event.data))
            if event.fin:
                data, self._frag = b"".join(self._frag), []
                self._text_or_binary(self._frag_text, data)
        else:
            super().process_event(event)  # ping, pong, close

    def _text_or_binary(self, is_text: bool, data: bytes) -> None:
        if is_text:
            try:
                data.decode()
            except UnicodeDecodeError:
                # Browsers fail the whole connection on bad UTF-8: never relay it.
                # (Counted with the other protocol errors when the handler ends.)
                self.protocol.fail(1007, "invalid UTF-8 in a text message")
                self.send_data()
                return
        elif data and data[0] in RPC_KINDS:
            self._rpc.append(data)  # a request or a reply, not a room message
            return
        self._batch.append((is_text, data))

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._batch:
            batch, self._batch = self._batch, []
            self.hub.from_client(self.room, batch)
        if self._rpc:
            frames, self._rpc = self._rpc, []
            self.hub.rpc.from_client(self, frames)
        if (self.transport.get_write_buffer_size() > self.hub.max_client_buffer
                and self.protocol.state is State.OPEN):
            # The protocol answers pings itself: a client that sends pings and never reads
            # its pongs grows its buffer as surely as one that does not read the room.
            self.hub.drop_slow(self)
            return
        if len(data) >= READ_YIELD_BYTES and not self.transport.is_closing():
            # libuv reads a busy socket up to 32 times a turn: one flooding client would
            # hold the loop for long stretches. One read, then the others' turn.
            self.transport.pause_reading()
            self.loop.call_soon(self._resume_reading)

    def _resume_reading(self) -> None:
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.hub.leave(self)  # before anything else can write to a dead transport
        super().connection_lost(exc)
        if self.dropped:
            self.loop.call_soon(_release_memory)


class Hub:
    """Rooms, local broadcast and the bridge; all on one event loop."""

    def __init__(self, stats: Stats, max_client_buffer: int, bridge: Bridge | None,
                 local_first: bool) -> None:
        self.stats = stats
        self.max_client_buffer = max_client_buffer
        self.bridge = bridge
        self.local_first = local_first
        self.rooms: dict[str, dict[ChatConnection, None]] = {}
        self.warn = Throttled(log)
        self.rpc = RpcRouter(stats.server_id, stats, self.write_binary)

    def join(self, conn: ChatConnection) -> None:
        """Make ``conn`` a member of its room (it receives what is sent there)."""
        self.rooms.setdefault(conn.room, {})[conn] = None

    def leave(self, conn: ChatConnection) -> None:
        """Remove ``conn`` from its room and from request/reply routing; safe to call twice."""
        self.rpc.leave(conn)
        members = self.rooms.get(conn.room)
        if members is not None and members.pop(conn, 0) is None and not members:
            del self.rooms[conn.room]

    def from_client(self, room: str, batch: Batch) -> None:
        """Messages a client sent: broadcast and/or hand to the bridge (see the module doc)."""
        self.stats.messages_in += len(batch)
        if self.bridge is not None:
            self.stats.bridge_out += len(batch)
            self.bridge.publish(room, batch)
            if not self.local_first:
                return  # it comes back through the bridge
        self.deliver(room, batch)

    def from_bridge(self, room: str, batch: Batch) -> None:
        """Messages another server (or Redis) sent: broadcast locally."""
        self.stats.bridge_in += len(batch)
        self.deliver(room, batch)

    def deliver(self, room: str, batch: Batch) -> None:
        """Write ``batch`` to every member of ``room`` without waiting for any of them."""
        members = self.rooms.get(room)
        if not members:
            return
        data = frame_bytes(batch)
        limit = self.max_client_buffer
        slow: list[ChatConnection] = []
        written = 0
        for conn in members:
            transport = conn.transport
            if transport.get_write_buffer_size() > limit:
                slow.append(conn)
                continue
            if conn.protocol.state is State.OPEN:
                transport.write(data)
                written += 1
        self.stats.messages_out += written * len(batch)
        for conn in slow:
            self.drop_slow(conn)

    def write_binary(self, conn: ChatConnection, frames: list[bytes]) -> None:
        """Write ``frames`` (binary) to ``conn`` alone, or drop it if it is too far behind."""
        transport = conn.transport
        if transport.get_write_buffer_size() > self.max_client_buffer:
            self.drop_slow(conn)
        elif conn.protocol.state is State.OPEN:
            transport.write(frame_bytes([(False, f) for f in frames]))

    def drop_slow(self, conn: ChatConnection) -> None:
        """Disconnect ``conn`` (1008): more than ``max_client_buffer`` bytes wait for it."""
        self.leave(conn)
        conn.dropped = True
        if not conn.transport.is_closing():
            conn.transport.pause_reading()  # nothing it sends is served any more
        self.stats.slow_disconnects += 1
        self.warn.warning("slow clients disconnected",
                          "disconnect slow client %s room=%s: more than %d bytes waiting",
                          peer(conn), conn.room, self.max_client_buffer)
        _close_now(conn, SLOW_CLOSE_CODE, "client too slow")

    def close_all(self, code: int, reason: str) -> None:
        """Close every member now (the server cannot go on)."""
        for members in list(self.rooms.values()):
            for conn in list(members):
                _close_now(conn, code, reason)


def _close_now(conn: ServerConnection, code: int, reason: str) -> None:
    """Send a close frame and abort the connection if the client does not answer in time.

    Not ``conn.close()``: it first waits for the write buffer to drain, which for a
    client that does not read is forever.
    """
    with contextlib.suppress(Exception):
        if conn.protocol.state is State.OPEN:
            conn.protocol.send_close(code, reason)
            conn.send_data()
    asyncio.get_running_loop().call_later(SLOW_CLOSE_GRACE_S, conn.transport.abort)


def peer(conn: ServerConnection) -> str:
    """``host:port`` of the client, for log lines."""
    addr = conn.remote_address
    return f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)

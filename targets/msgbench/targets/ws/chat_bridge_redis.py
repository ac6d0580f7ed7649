"""The Redis bridge of the chat servers: PUBLISH on one connection, PSUBSCRIBE on another,
both through msgbench's own RESP client; see :mod:`msgbench.targets.ws.chat_bridge`."""

from __future__ import annotations

import asyncio

import hiredis

from msgbench.kit.redis_cluster import connect, parse_url
from msgbench.kit.resp import RespConnection, RespError, command
from msgbench.kit.urls import mask_url
from msgbench.targets.ws.chat_bridge import (
    CHANNEL_PREFIX,
    RPC_CHANNEL,
    Batch,
    BridgeError,
    OnLost,
    OnMessages,
    OnRpc,
    decode_body,
    encode_body,
    rpc_channel,
)

CONNECT_TIMEOUT_S = 5.0
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
                msg = decode_body(r[3])
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
                for channel in (RPC_CHANNEL, rpc_channel(self.server_id)):
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
            pub.send_counted(b"".join([command(b"PUBLISH", channel, encode_body(t, d))
                                       for t, d in batch]), len(batch))
        except RespError as exc:  # closed, or Redis refused an earlier PUBLISH
            self._lost(f"Redis refused a PUBLISH: {exc}" if pub.lost is None else str(exc))

    def send_rpc(self, dest: str | None, bodies: list[bytes]) -> None:
        """PUBLISH each body to ``dest``'s own channel (or the one for all), pipelined."""
        pub = self._writer()
        if pub is None:
            return
        channel = RPC_CHANNEL if dest is None else rpc_channel(dest)
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

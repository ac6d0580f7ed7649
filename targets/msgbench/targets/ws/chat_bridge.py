"""Bridges that let several chat servers share messages: Redis pub/sub or a ZeroMQ mesh.

A bridge carries ``(room, batch)``: each message is one Redis PUBLISH / one
ZeroMQ message whose body is a kind byte (``t`` text, ``b`` binary) and the
message itself, so ``redis-cli PUBLISH msgbench-chat:lobby thello`` shows
"hello" to every page in the lobby.

* :class:`~msgbench.targets.ws.chat_bridge_redis.RedisBridge` speaks RESP through msgbench's
  own client (:mod:`msgbench.kit.resp`) on two connections: one writes PUBLISH commands
  without waiting for each reply (pipelined: a round trip per message would cap
  a server at a few thousand messages per second), one holds
  ``PSUBSCRIBE msgbench-chat:*``.
* :class:`~msgbench.targets.ws.chat_bridge_zmq.ZmqBridge` binds a PUB socket and connects a
  SUB socket to every peer; ZeroMQ messages are ``[room, origin, body]`` and a server drops those
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

from collections.abc import Callable, Sequence
from typing import Protocol

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


def encode_body(is_text: bool, data: bytes) -> bytes:
    """A message as a bridge carries it: its kind byte (``t`` text, ``b`` binary), then it."""
    return (b"t" if is_text else b"b") + data


def decode_body(body: bytes) -> tuple[bool, bytes] | None:
    """``(is_text, data)`` of a bridged body; None for one no server sent (unknown kind,
    text that is not UTF-8), which is dropped."""
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


def rpc_channel(server_id: str) -> bytes:
    """The Redis channel of request/reply bodies for server ``server_id`` alone."""
    return RPC_CHANNEL + b":" + server_id.encode()


async def open_bridge(kind: str, server_id: str, redis_url: str | None, zmq_bind: str | None,
                      zmq_peers: Sequence[str], on_messages: OnMessages, on_lost: OnLost,
                      on_rpc: OnRpc | None = None) -> Bridge:
    """Build and start the bridge named ``kind`` (``redis`` or ``zmq``); request/reply
    bodies for this server go to ``on_rpc``.

    Raises :class:`BridgeError` with one line when it cannot be set up.
    """
    # each bridge's module is imported only when it is used: its library (hiredis, pyzmq) is
    # not needed by a server that does not bridge through it
    if kind == "redis":
        from msgbench.targets.ws.chat_bridge_redis import RedisBridge

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
        from msgbench.targets.ws.chat_bridge_zmq import ZmqBridge

        if not zmq_bind:
            raise BridgeError("--bridge zmq needs --zmq-bind tcp://127.0.0.1:PORT")
        zb = ZmqBridge(server_id, zmq_bind, zmq_peers, on_messages, on_rpc)
        zb.start()
        return zb
    raise BridgeError(f"unknown bridge {kind!r}: use none, redis or zmq")

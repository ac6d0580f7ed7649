"""Request/reply on the chat server: responders of a room, return addresses, the rotation.

Frames (binary; their first byte is above ``PAYLOAD_FIRST_BYTE_MAX``, so a payload is
never taken for one, and any other binary frame is a room message as before):

* ``REQUEST`` (client -> server): ``0xF0`` + the request, on any connection of ``room``.
  The server hands it to one responder of the room (round robin over every responder,
  its own and, bridged, the other servers'), tagged with the return address;
* ``TO_RESPONDER`` (server -> responder): ``0xF1`` + address length (1 byte) + address
  + the request. A responder is a connection opened with ``respond=1``: it answers the
  room's requests and is not a member of the room (it receives no room messages);
* ``REPLY`` (responder -> server): ``0xF2`` + the address length and address it got +
  the reply. The server that accepted the request (the address names it) writes the
  reply, as a plain binary frame, to the one connection that sent the request.

The address is the origin server's id and the requester's connection id there, a random
64-bit number, so a client can neither choose nor guess another's. A reply whose
requester is gone is dropped and counted (``replies_dropped``); a request no responder
can take is dropped and counted (``requests_unroutable``); the requester's timeout tells
the rest.

Bridged, servers tell each other how many responders each room has on them (at every
change and every :data:`ANNOUNCE_S`); a request or a reply for another server travels as
one directed bridge message (:mod:`msgbench.targets.ws.chat_bridge`).
"""

from __future__ import annotations

import asyncio
import secrets
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from msgbench.targets.ws.chat_hub import ChatConnection

REQUEST = 0xF0
TO_RESPONDER = 0xF1
REPLY = 0xF2
RPC_KINDS = frozenset({REQUEST, REPLY})
"""First bytes of the frames a client sends that are not room messages."""
ANNOUNCE_S = 1.0
"""How often a bridged server repeats its responder counts (a server that starts later
learns them within this; a change is told at once)."""
FORGET_S = 3.5 * ANNOUNCE_S
"""A server not heard from for this long has no responders any more (it is gone)."""
_ID = struct.Struct("!Q")
_COUNT = struct.Struct("!I")
# bridge message bodies: kind byte, then fields
_B_REQUEST = 0x71  # "q": room length, room, address length, address, request
_B_REPLY = 0x72  # "r": address length, address, reply
_B_ANNOUNCE = 0x61  # "a": server id length, id, then (room length, room, count) per room


class RpcBridge(Protocol):
    """What the router needs from a bridge: one directed (or, ``None``, broadcast) body."""

    def send_rpc(self, dest: str | None, bodies: list[bytes]) -> None:
        """Send ``bodies`` to server ``dest``, or to every server (itself included or not)."""


@dataclass
class RpcStats:
    """The request/reply counters of ``GET /stats`` (merged into the server's)."""

    requests_in: int = 0
    requests_out: int = 0
    requests_unroutable: int = 0
    replies_in: int = 0
    replies_out: int = 0
    replies_dropped: int = 0
    rpc_malformed: int = 0
    rpc_bridge_out: int = 0
    rpc_bridge_in: int = 0


def new_conn_id() -> int:
    """A connection's id: random, so a return address cannot be guessed."""
    return secrets.randbits(64)


def _short(b: bytes) -> bytes:
    return bytes((len(b),)) + b


@dataclass
class _Room:
    local: list[ChatConnection] = field(default_factory=list)
    rotation: list[ChatConnection | str] = field(default_factory=list)
    next: int = 0


class RpcRouter:
    """Responders per room, requesters by id, and the routes between them (one loop)."""

    def __init__(self, server_id: str, stats: RpcStats,
                 write: Callable[[ChatConnection, list[bytes]], None]) -> None:
        self.server_id = server_id
        self.origin = server_id.encode()
        self.stats = stats
        self.write = write
        """Writes binary frames to a connection (the hub's, with its slow-client bound)."""
        self.bridge: RpcBridge | None = None
        self.conns: dict[int, ChatConnection] = {}
        self.rooms: dict[str, _Room] = {}
        self.remote: dict[str, dict[str, int]] = {}
        self.heard: dict[str, float] = {}
        self._timer: asyncio.TimerHandle | None = None

    # -- membership -----------------------------------------------------------
    def register(self, conn: ChatConnection) -> None:
        """``conn`` may send requests: its replies find it by ``conn.conn_id``."""
        self.conns[conn.conn_id] = conn

    def add_responder(self, conn: ChatConnection) -> None:
        """``conn`` answers the requests of its room from now on."""
        self.rooms.setdefault(conn.room, _Room()).local.append(conn)
        self._rebuild(conn.room)
        self._announce()

    def leave(self, conn: ChatConnection) -> None:
        """Forget ``conn`` (gone or dropped): no reply reaches it, no request goes to it."""
        self.conns.pop(conn.conn_id, None)
        room = self.rooms.get(conn.room)
        if room is not None and conn in room.local:
            room.local.remove(conn)
            self._rebuild(conn.room)
            self._announce()

    def _rebuild(self, name: str) -> None:
        room = self.rooms.setdefault(name, _Room())
        rotation: list[ChatConnection | str] = list(room.local)
        for server, counts in sorted(self.remote.items()):
            rotation += [server] * counts.get(name, 0)
        room.rotation = rotation
        if not rotation and not room.local:
            del self.rooms[name]

    # -- frames from clients --------------------------------------------------
    def from_client(self, conn: ChatConnection, frames: list[bytes]) -> None:
        """Requests and replies ``conn`` sent, in order (their first byte says which)."""
        requests = [f for f in frames if f[0] == REQUEST]
        if requests:
            self.stats.requests_in += len(requests)
            address = _short(self.origin + _ID.pack(conn.conn_id))
            self._route(conn.room, address, [memoryview(f)[1:] for f in requests])
        if len(requests) < len(frames):
            self._replies([memoryview(f)[1:] for f in frames if f[0] == REPLY])

    def _route(self, name: str, address: bytes, requests: list[memoryview]) -> None:
        room = self.rooms.get(name)
        rotation = room.rotation if room is not None else []
        if not rotation:
            self.stats.requests_unroutable += len(requests)
            return
        assert room is not None
        n = len(rotation)
        i = room.next
        local: dict[ChatConnection, list[bytes]] = {}
        remote: dict[str, list[bytes]] = {}
        head = bytes((TO_RESPONDER,)) + address
        for req in requests:
            dest = rotation[i % n]
            i += 1
            if isinstance(dest, str):
                remote.setdefault(dest, []).append(b"".join((
                    bytes((_B_REQUEST,)), _short(name.encode()), address, req)))
            else:
                local.setdefault(dest, []).append(head + req)
        room.next = i % n
        for c, out in local.items():
            self.stats.requests_out += len(out)
            self.write(c, out)
        self._to_bridge(remote)

    def _replies(self, replies: list[memoryview]) -> None:
        """Replies with their address in front: written here or sent to their origin."""
        self.stats.replies_in += len(replies)
        local: dict[ChatConnection, list[bytes]] = {}
        remote: dict[str, list[bytes]] = {}
        for rep in replies:
            cut = _cut_address(rep)
            if cut is None:
                self.stats.rpc_malformed += 1
                continue
            origin, conn_id, body = cut
            if origin == self.origin:
                c = self.conns.get(conn_id)
                if c is None:
                    self.stats.replies_dropped += 1  # its requester is gone
                else:
                    local.setdefault(c, []).append(bytes(body))
            elif self.bridge is None:
                self.stats.replies_dropped += 1  # names a server this one cannot reach
            else:
                remote.setdefault(origin.decode(errors="replace"), []).append(
                    bytes((_B_REPLY,)) + bytes(rep))
        for c, out in local.items():
            self.stats.replies_out += len(out)
            self.write(c, out)
        self._to_bridge(remote)

    def _to_bridge(self, out: dict[str, list[bytes]]) -> None:
        if self.bridge is None:
            return
        for dest, bodies in out.items():
            self.stats.rpc_bridge_out += len(bodies)
            self.bridge.send_rpc(dest, bodies)

    # -- the bridge -------------------------------------------------------------
    def from_bridge(self, bodies: Iterable[bytes]) -> None:
        """Bodies another server sent: requests for a responder here, replies for a
        requester here, responder counts."""
        for body in bodies:
            kind = body[:1]
            view = memoryview(body)[1:]
            if kind == b"q":
                self.stats.rpc_bridge_in += 1
                cut = _cut_room(view)
                if cut is None:
                    self.stats.rpc_malformed += 1
                    continue
                name, address, req = cut
                self._route_here(name, address, req)
            elif kind == b"r":
                self.stats.rpc_bridge_in += 1
                self._replies([view])
            elif kind == b"a":
                self._heard(view)

    def _route_here(self, name: str, address: bytes, req: memoryview) -> None:
        """A request another server chose one of this server's responders for."""
        room = self.rooms.get(name)
        if room is None or not room.local:
            self.stats.requests_unroutable += 1  # the responder left before it arrived
            return
        conn = room.local[room.next % len(room.local)]
        room.next += 1
        self.stats.requests_out += 1
        self.write(conn, [bytes((TO_RESPONDER,)) + address + req])

    def _heard(self, view: memoryview) -> None:
        try:
            n = view[0]
            server = bytes(view[1 : 1 + n]).decode()
            pos = 1 + n
            counts: dict[str, int] = {}
            while pos < len(view):
                m = view[pos]
                room = bytes(view[pos + 1 : pos + 1 + m]).decode()
                counts[room] = _COUNT.unpack_from(view, pos + 1 + m)[0]
                pos += 1 + m + _COUNT.size
        except (IndexError, UnicodeDecodeError, struct.error):
            self.stats.rpc_malformed += 1
            return
        if server == self.server_id:
            return  # Redis sends a server its own announcements back
        self.heard[server] = asyncio.get_running_loop().time()
        if self.remote.get(server) != counts:
            before = set(self.remote.get(server, {}))
            self.remote[server] = counts
            for name in before | set(counts):
                self._rebuild(name)

    def start(self, bridge: RpcBridge) -> None:
        """Announce this server's responders over ``bridge`` now and every ANNOUNCE_S."""
        self.bridge = bridge
        self._tick()

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for server in [s for s, t in self.heard.items() if now - t > FORGET_S]:
            del self.heard[server]
            names = set(self.remote.pop(server, {}))
            for name in names:
                self._rebuild(name)
        self._announce()
        self._timer = loop.call_later(ANNOUNCE_S, self._tick)

    def _announce(self) -> None:
        if self.bridge is None:
            return
        parts = [bytes((_B_ANNOUNCE,)), _short(self.origin)]
        for name, room in self.rooms.items():
            if room.local:
                parts += [_short(name.encode()), _COUNT.pack(len(room.local))]
        self.bridge.send_rpc(None, [b"".join(parts)])

    def stop(self) -> None:
        """Stop announcing."""
        if self._timer is not None:
            self._timer.cancel()


def _cut_address(view: memoryview) -> tuple[bytes, int, memoryview] | None:
    """``(origin, connection id, rest)`` of address length + address + rest, or None."""
    if not view:
        return None
    n = view[0]
    if n < _ID.size or len(view) < 1 + n:
        return None
    origin = bytes(view[1 : 1 + n - _ID.size])
    conn_id = _ID.unpack_from(view, 1 + n - _ID.size)[0]
    return origin, conn_id, view[1 + n :]


def _cut_room(view: memoryview) -> tuple[str, bytes, memoryview] | None:
    """``(room, address with its length, request)`` of a bridged request, or None."""
    try:
        m = view[0]
        name = bytes(view[1 : 1 + m]).decode()
        n = view[1 + m]
    except (IndexError, UnicodeDecodeError):
        return None
    start = 1 + m
    if len(view) < start + 1 + n:
        return None
    return name, bytes(view[start : start + 1 + n]), view[start + 1 + n :]

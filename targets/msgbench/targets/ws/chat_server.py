"""The chat server: a page at ``/``, a WebSocket at ``/ws``, broadcast within rooms.

Every message a client sends on ``/ws?room=NAME`` goes to every connected
client of that room (the sender included, as in the source's chat). Text
frames are chat lines from the page; binary frames are carried the same way
and are what the ``ws`` benchmark target sends, so the page never shows them.

Query parameters of ``/ws``: ``room`` (default ``lobby``; letters, digits,
``_ . -``, up to 64), ``listen=0`` for a send-only client (it is not a member
of the room and receives nothing), ``ack=1`` to get one text frame
``{"type": "joined", ...}`` once the client is a member, so a client knows
that what is sent from then on reaches it, ``respond=1`` for a responder of the
room's requests (request/reply frames: :mod:`msgbench.targets.ws.chat_rpc`).

Servers share messages through a bridge (:mod:`msgbench.targets.ws.chat_bridge`):

* ``redis``: a server publishes what its clients send to the channel
  ``msgbench-chat:ROOM`` and broadcasts only what comes back from Redis, its
  own messages included (the source's design): every message takes the Redis
  round trip, and all servers see a room's messages in one order.
* ``zmq``: a server broadcasts locally at once and publishes to its peers,
  which broadcast what they receive; messages carry the origin server's id
  and a server drops its own, so nothing echoes around the mesh.

Robustness: messages over ``max_size`` and malformed frames close only that
client (1009 / 1002 / 1007). A client whose outgoing buffer passes
``max_client_buffer`` bytes is disconnected with 1008 and counted: the
broadcast writes to each client's transport without awaiting it, so a client
that does not read never stalls the others; the pongs the protocol answers
pings with count against that bound too. Browsers' pages from other origins
are refused (403) unless ``allow_origins`` names them: any web page the user
opens could otherwise read and post in local rooms. Repeated events (slow
clients, refused origins) are logged once, then counted. ``GET /stats``
returns the counters as JSON. Rooms and the broadcast live in
:mod:`msgbench.targets.ws.chat_hub`, the bridges in :mod:`msgbench.targets.ws.chat_bridge`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
from dataclasses import asdict, dataclass
from http import HTTPStatus
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from msgbench.targets.ws.chat_bridge import Bridge, BridgeError
from msgbench.targets.ws.chat_hub import (
    DEFAULT_ROOM,
    SLOW_CLOSE_GRACE_S,
    ChatConnection,
    Hub,
    Stats,
    peer,
)

log = logging.getLogger("msgbench.chat")

DEFAULT_MAX_SIZE = 64 * 1024
DEFAULT_MAX_CLIENT_BUFFER = 4 * 1024 * 1024
MAX_CLIENT_BUFFER = 1024**3
"""Largest --max-size and --max-client-buffer: a client may cost the server that much."""
CLOSE_TIMEOUT_S = 2.0
BRIDGE_LOST_CODE = 1011
ROOM_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
WS_PATH = "/ws"
LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class StartError(Exception):
    """The server cannot start (port in use, bridge unreachable); one line for the user."""


def page_html() -> bytes:
    """The chat page (package data)."""
    return resources.files("msgbench.targets.ws").joinpath("chat_page.html").read_bytes()


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``msgbench serve chat`` passes to :func:`run`."""

    host: str
    port: int
    server_id: str
    bridge: str = "none"
    redis_url: str | None = None
    zmq_bind: str | None = None
    zmq_peers: tuple[str, ...] = ()
    max_size: int = DEFAULT_MAX_SIZE
    max_client_buffer: int = DEFAULT_MAX_CLIENT_BUFFER
    allow_origins: tuple[str, ...] = ()
    """Web origins (``https://chat.example.com``) whose pages may use the WebSocket besides
    the server's own page; ``*`` allows any. Clients that send no ``Origin`` (not a
    browser: msgbench's own) are always let in."""


class ChatServer:
    """One running chat server: its hub, bridge and WebSocket listener."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.stats = Stats(server_id=config.server_id, bridge=config.bridge)
        self.bridge: Bridge | None = None
        self.hub = Hub(self.stats, config.max_client_buffer, None, config.bridge != "redis")
        self.server: Server | None = None
        self.stopped = asyncio.Event()
        self.failure: str | None = None
        self._page = page_html()

    async def start(self) -> None:
        """Connect the bridge, then listen: once the port accepts, the server is complete.

        Raises :class:`StartError` with one line (port in use, bridge unreachable).
        """
        cfg = self.config
        if cfg.bridge != "none":
            from msgbench.targets.ws.chat_bridge import open_bridge

            try:
                self.bridge = await open_bridge(cfg.bridge, cfg.server_id, cfg.redis_url,
                                                cfg.zmq_bind, cfg.zmq_peers,
                                                self.hub.from_bridge, self._bridge_lost,
                                                self.hub.rpc.from_bridge)
            except BridgeError as exc:
                raise StartError(str(exc)) from None
            self.hub.bridge = self.bridge
            self.hub.rpc.start(self.bridge)

        def factory(*args: Any, **kwargs: Any) -> ChatConnection:
            conn = ChatConnection(*args, **kwargs)
            conn.hub = self.hub
            return conn

        try:
            self.server = await serve(
                self._handler, cfg.host, cfg.port,
                process_request=self._process_request,
                compression=None,  # frame_bytes writes prepared, uncompressed frames
                max_size=cfg.max_size,
                close_timeout=CLOSE_TIMEOUT_S,
                create_connection=factory,  # type: ignore[arg-type, unused-ignore]
            )
        except OSError as exc:
            if self.bridge is not None:
                self.bridge.close()
            why = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise StartError(f"cannot listen on {cfg.host}:{cfg.port}: {why}") from None
        port = next(iter(self.server.sockets)).getsockname()[1]  # the real one for --port 0
        log.info("chat server %s listening on http://%s:%d/ (bridge %s)", cfg.server_id,
                 _host_for_url(cfg.host), port, cfg.bridge)

    def _bridge_lost(self, reason: str) -> None:
        if self.failure is not None:
            return  # already closing: one report is enough
        self.failure = f"lost the {self.config.bridge} bridge: {reason}"
        log.error("%s; closing every client (%d) and exiting", self.failure,
                  self.stats.connected)
        self.hub.close_all(BRIDGE_LOST_CODE, "bridge lost")
        # let the close frames leave before the process does
        asyncio.get_running_loop().call_later(SLOW_CLOSE_GRACE_S, self.stopped.set)

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path == WS_PATH:
            origin = request.headers.get("Origin")
            if origin is not None and not self._origin_ok(origin, request.headers.get("Host")):
                self.stats.origins_refused += 1
                self.hub.warn.warning("origins refused",
                                      "refused a WebSocket from origin %r (see --allow-origin)",
                                      origin[:100])
                return conn.respond(HTTPStatus.FORBIDDEN,
                                    "this origin may not use the chat (--allow-origin)\n")
            query = parse_qs(url.query)
            room = query.get("room", [DEFAULT_ROOM])[0]
            if not ROOM_RE.fullmatch(room):
                return conn.respond(HTTPStatus.BAD_REQUEST, "room: 1-64 of A-Z a-z 0-9 _ . -\n")
            assert isinstance(conn, ChatConnection)
            conn.room = room
            conn.answers = query.get("respond", ["0"])[0] == "1"
            conn.listen = query.get("listen", ["1"])[0] != "0" and not conn.answers
            conn.ack = query.get("ack", ["0"])[0] == "1"
            return None  # go on with the WebSocket handshake
        if url.path in ("/", "/index.html"):
            return _response(conn, HTTPStatus.OK, self._page, "text/html; charset=utf-8")
        if url.path == "/stats":
            body = json.dumps(asdict(self.stats)).encode()
            return _response(conn, HTTPStatus.OK, body, "application/json")
        return conn.respond(HTTPStatus.NOT_FOUND, "not found\n")

    def _origin_ok(self, origin: str, host: str | None) -> bool:
        """May a page from ``origin`` use the WebSocket? Its own page may (same scheme-less
        origin as the ``Host`` it asked for, when that host names this machine's loopback
        or the address the server listens on: a rebound DNS name does not), and so may the
        origins given with ``--allow-origin``."""
        allowed = self.config.allow_origins
        if "*" in allowed or origin in allowed:
            return True
        if not host:
            return False
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or parts.netloc.lower() != host.lower():
            return False
        name = (parts.hostname or "").lower()
        return name in LOCAL_NAMES or name == self.config.host.lower()

    async def _handler(self, ws: ServerConnection) -> None:
        assert isinstance(ws, ChatConnection)
        stats = self.stats
        stats.connected += 1
        stats.connections_total += 1
        self.hub.rpc.register(ws)
        if ws.answers:
            self.hub.rpc.add_responder(ws)
        elif ws.listen:
            self.hub.join(ws)
        log.info("connect %s room=%s%s (%d connected)", peer(ws), ws.room,
                 " responder" if ws.answers else "" if ws.listen else " send-only",
                 stats.connected)
        try:
            if ws.ack:
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(json.dumps({"type": "joined", "room": ws.room,
                                              "server": stats.server_id}))
            await ws.wait_closed()
        finally:
            self.hub.leave(ws)
            stats.connected -= 1
            sent = ws.protocol.close_sent
            if sent is not None and sent.code in (1002, 1007, 1009):
                stats.protocol_errors += 1
            log.info("disconnect %s room=%s code=%s (%d connected)", peer(ws), ws.room,
                     ws.close_code, stats.connected)

    async def stop(self) -> None:
        """Close every connection (1001) and the bridge."""
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), CLOSE_TIMEOUT_S + 1)
        self.hub.rpc.stop()
        if self.bridge is not None:
            self.bridge.close()


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _response(conn: ServerConnection, status: HTTPStatus, body: bytes, ctype: str) -> Response:
    response = conn.respond(status, "")
    headers = Headers(
        [(k, v) for k, v in response.headers.raw_items() if k.lower() not in
         ("content-type", "content-length")]
    )
    headers["Content-Type"] = ctype
    headers["Content-Length"] = str(len(body))
    headers["Cache-Control"] = "no-store"
    return Response(response.status_code, response.reason_phrase, headers, body)


async def run(config: ServerConfig, ready: asyncio.Future[ChatServer] | None = None) -> str | None:
    """Serve until SIGTERM / SIGINT (or the bridge is lost); returns the failure, if any.

    Raises :class:`StartError` when the server cannot start.
    """
    server = ChatServer(config)
    await server.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, server.stopped.set)
    if ready is not None:
        ready.set_result(server)
    try:
        await server.stopped.wait()
    finally:
        await server.stop()
    return server.failure

"""The worker side of ``ws --pattern rpc``: requesters and responders on the chat server.

A requester opens one connection per room it sends to (``listen=0``: it gets
no room messages, only the replies to its own requests, as plain binary
frames) and sends each request as a ``REQUEST`` frame. A responder opens one
``respond=1`` connection to its room, answers the ``TO_RESPONDER`` frames a
socket read at a time with the driver's :class:`Service`, and sends each reply
as a ``REPLY`` frame carrying the return address it came with. The frames are
those of :mod:`msgbench.targets.ws.chat_rpc`; which server a requester and a
responder use follows ``--ws-placement`` as for publishers and subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from msgbench.api.target import Requester, Service, Sink, Subscription
from msgbench.targets.ws.chat_rpc import REPLY, REQUEST, TO_RESPONDER
from msgbench.targets.ws.client import (
    CLOSE_TIMEOUT_S,
    PUB_WRITE_LIMIT,
    WsClient,
    _abandon,
    _closed_reason,
    _SubConnection,
    close_all,
    open_joined,
    server_for_pub,
    server_for_sub,
)

_REQUEST = bytes((REQUEST,))
_REPLY = bytes((REPLY,))


class _WsRequester(Requester):
    """Requests on one connection per room; replies come back on the same connection."""

    def __init__(self, url: str, server: int, sink: Sink) -> None:
        self.url = url
        self.server = server
        self.sink = sink
        self.conns: dict[str, _SubConnection] = {}
        self.closing = False
        self.watchers: list[asyncio.Future[None]] = []

    async def _conn(self, topic: str) -> _SubConnection:
        conn = self.conns.get(topic)
        if conn is None:
            conn = await open_joined(self.server, self.url, topic, self.sink, "&listen=0",
                                     write_limit=PUB_WRITE_LIMIT)
            self.conns[topic] = conn
            self.watchers.append(asyncio.ensure_future(self._watch(conn)))
        return conn

    async def _watch(self, conn: _SubConnection) -> None:
        await conn.wait_closed()
        if not self.closing:
            self.sink.disconnected(_closed_reason(conn, self.server))

    async def request(self, topic: str, payloads: Sequence[bytes]) -> None:
        """One ``REQUEST`` frame per request, written in one go; waits while the socket
        is full."""
        conn = await self._conn(topic)
        proto = conn.protocol
        if conn.transport.is_closing():
            raise ConnectionError(_closed_reason(conn, self.server))
        send = proto.send_binary
        for p in payloads:
            send(_REQUEST + p)
        conn.transport.write(b"".join(proto.data_to_send()))
        if conn.paused:
            await conn.drain()

    async def close(self) -> None:
        self.closing = True
        for w in self.watchers:
            w.cancel()
        for conn in self.conns.values():
            conn.sink = None
        await close_all(self.conns.values())


class _Inbox(Sink):
    """Where a responder's connection puts the requests it reads, for its answer loop."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Sequence[bytes] | None] = asyncio.Queue()

    def deliver(self, payloads: Sequence[bytes], offset: int = 0) -> None:
        self.queue.put_nowait(payloads)

    def disconnected(self, reason: str) -> None:
        # nothing to tell but the requesters' timeouts, which count it; a dead chat
        # server is named by the coordinator's watch
        self.queue.put_nowait(None)

    def note(self, reason: str) -> None:
        return None


class _WsResponder(Subscription):
    """Answers what its connection reads, a batch at a time, in arrival order."""

    def __init__(self, conn: _SubConnection, inbox: _Inbox, service: Service) -> None:
        self.conn = conn
        self.inbox = inbox
        self.service = service
        self.task = asyncio.ensure_future(self._run())
        self.watch = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        await self.conn.wait_closed()
        self.inbox.disconnected("closed")

    async def _run(self) -> None:
        queue = self.inbox.queue
        conn = self.conn
        while True:
            first = await queue.get()
            if first is None:
                return
            frames = list(first)
            while not queue.empty():  # whatever else arrived meanwhile: one batch
                more = queue.get_nowait()
                if more is None:
                    return
                frames += more
            heads: list[bytes] = []
            requests: list[bytes] = []
            for f in frames:
                if not f or f[0] != TO_RESPONDER or len(f) < 2 or len(f) < 2 + f[1]:
                    continue  # not a request frame: nothing to answer
                end = 2 + f[1]
                heads.append(f[1:end])
                requests.append(f[end:])
            if not requests:
                continue
            replies = await self.service.answer(requests)
            if conn.transport.is_closing():
                return
            proto = conn.protocol
            for head, rep in zip(heads, replies, strict=True):
                proto.send_binary(b"".join((_REPLY, head, rep)))
            conn.transport.write(b"".join(proto.data_to_send()))
            if conn.paused:
                await conn.drain()

    async def close(self) -> None:
        self.watch.cancel()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
        self.conn.sink = None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.conn.close(), CLOSE_TIMEOUT_S)
        _abandon(self.conn)


class WsRpcClient(WsClient):
    """:class:`WsClient` with requesters and responders (the ``rpc`` pattern)."""

    async def requester(self, req_id: int, sink: Sink) -> Requester:
        """Requester ``req_id`` on the server a publisher of that id would use."""
        i = server_for_pub(req_id, len(self.urls), self.placement)
        return _WsRequester(self.urls[i], i, sink)

    async def responder(self, resp_id: int, topics: Sequence[str],
                        service: Service) -> Subscription:
        """A responder of ``topics`` (one room) on the server a subscriber of that id
        would use; in place once the server confirmed it."""
        (topic,) = topics
        i = server_for_sub(resp_id, len(self.urls), self.placement)
        inbox = _Inbox()
        conn = await open_joined(i, self.urls[i], topic, inbox, "&respond=1")
        return _WsResponder(conn, inbox, service)

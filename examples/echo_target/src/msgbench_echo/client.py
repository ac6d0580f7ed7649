"""The worker side of the echo target: one TCP connection per publisher, subscription,
requester and responder, each speaking :mod:`.frames` to the echo server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

from msgbench.api import Client, Publisher, Requester, Service, Sink, Subscription, TargetError
from msgbench_echo import frames
from msgbench_echo.frames import CALL, CONN, JOIN, MSG, OK, PUB, REP, REQ, SERVE, SUB

CONNECT_TIMEOUT_S = 5.0
READ_SIZE = 256 * 1024
SETUP_TIMEOUT_S = 5.0
"""How long a SUB, JOIN or SERVE may wait for the server's OK before the run gives up."""

Frames = list[tuple[int, bytes]]


async def _connect(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        return await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        raise TargetError(f"cannot reach the echo server at {host}:{port}: {exc}") from None


class _Link(Subscription):
    """A connection whose incoming frames go to ``on_frames``; it says when the server's OKs
    for its set-up frames have come, and tells ``sink`` when the server goes away."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sink: Sink,
                 on_frames: Callable[[Frames], Awaitable[None]]) -> None:
        self.reader, self.writer, self.sink, self.on_frames = reader, writer, sink, on_frames
        self.oks = 0
        self.ready = asyncio.Event()
        self.want = 0
        self.closing = False
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def setup(self, body_op: int, bodies: Sequence[bytes]) -> None:
        """Send one set-up frame per body and wait until the server says each is in place."""
        self.want = len(bodies)
        self.writer.write(b"".join(frames.frame(body_op, b) for b in bodies))
        await self.writer.drain()
        try:
            await asyncio.wait_for(self.ready.wait(), SETUP_TIMEOUT_S)
        except TimeoutError:
            raise TargetError(f"the echo server did not confirm within {SETUP_TIMEOUT_S:g} s"
                              ) from None

    async def _run(self) -> None:
        buf = bytearray()
        reason = "the echo server closed the connection"
        try:
            while chunk := await self.reader.read(READ_SIZE):
                buf += chunk
                got = frames.split(buf)
                self.oks += sum(1 for op, _ in got if op == OK)
                if self.oks >= self.want:
                    self.ready.set()
                await self.on_frames([(op, b) for op, b in got if op != OK])
        except (ConnectionError, frames.FrameError) as exc:
            reason = f"echo server connection lost: {exc}"
        if not self.closing:
            self.sink.disconnected(reason)

    async def close(self) -> None:
        self.closing = True
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await self.task
        self.writer.close()


class EchoPublisher(Publisher):
    """Sends each payload as a PUB frame: one write per batch."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    async def publish(self, topic: str, payloads: Sequence[bytes]) -> None:
        if self.writer.is_closing():
            raise ConnectionError("the echo server connection is closed")
        self.writer.write(frames.frames(PUB, frames.name(topic), payloads))
        await self.writer.drain()  # flow control: wait while the kernel's buffer is full

    async def close(self) -> None:
        self.writer.close()


class EchoRequester(Requester):
    """Sends REQ frames; the server sends each reply back on this connection as MSG."""

    def __init__(self, writer: asyncio.StreamWriter, link: _Link) -> None:
        self.writer, self.link = writer, link

    async def request(self, topic: str, payloads: Sequence[bytes]) -> None:
        if self.writer.is_closing():
            raise ConnectionError("the echo server connection is closed")
        self.writer.write(frames.frames(REQ, frames.name(topic), payloads))
        await self.writer.drain()

    async def close(self) -> None:
        await self.link.close()


class EchoClient(Client):
    """Opens a connection per publisher, subscription, requester and responder."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    async def publisher(self, pub_id: int) -> Publisher:
        _, writer = await _connect(self.host, self.port)
        return EchoPublisher(writer)

    async def subscribe(self, sub_id: int, topics: Sequence[str], sink: Sink,
                        group: str | None = None) -> Subscription:
        reader, writer = await _connect(self.host, self.port)

        async def fanout(got: Frames) -> None:
            sink.deliver([body for op, body in got if op == MSG])

        async def shared(got: Frames) -> None:
            tasks = [body for op, body in got if op == MSG]
            if tasks:
                await sink.handle(tasks)  # done before the next read: TCP holds the rest

        link = _Link(reader, writer, sink, fanout if group is None else shared)
        if group is None:
            await link.setup(SUB, [frames.name(t) for t in topics])
        else:
            await link.setup(JOIN, [frames.name(t) + frames.name(group) for t in topics])
        return link

    async def requester(self, req_id: int, sink: Sink) -> Requester:
        reader, writer = await _connect(self.host, self.port)

        async def replies(got: Frames) -> None:
            sink.deliver([body for op, body in got if op == MSG])

        link = _Link(reader, writer, sink, replies)
        link.ready.set()  # nothing to set up: the server knows this connection by itself
        return EchoRequester(writer, link)

    async def responder(self, resp_id: int, topics: Sequence[str],
                        service: Service) -> Subscription:
        reader, writer = await _connect(self.host, self.port)

        async def answer(got: Frames) -> None:
            calls = [body for op, body in got if op == CALL]
            if not calls:
                return
            replies = await service.answer([c[CONN.size :] for c in calls])
            writer.write(b"".join(frames.frame(REP, c[: CONN.size] + r)
                                  for c, r in zip(calls, replies, strict=True)))
            await writer.drain()

        link = _Link(reader, writer, _Quiet(), answer)
        await link.setup(SERVE, [frames.name(t) for t in topics])
        return link


class _Quiet(Sink):
    """A responder has no sink of its own: a lost server shows at the requesters."""

    def deliver(self, payloads: Sequence[bytes], offset: int = 0) -> None:
        """Nothing is delivered to a responder."""

    def disconnected(self, reason: str) -> None:
        """The requesters' sinks say it."""

    def note(self, reason: str) -> None:
        """Nothing to note."""

"""``--zmq-mode reqrep``: lockstep request/reply, REQ requesters and REP responders.

Each responder binds a REP socket; each requester has one REQ socket per topic,
connected to every responder of that topic (REQ sends each request to the next one in
turn). A REQ socket allows one request outstanding: it sends, waits for the reply, and
only then sends the next. One REQ socket per requester, not a pool: that is the design
as people use it, and pooling would make it a different one. So an open-loop schedule
faster than one round trip per request queues *in the requester*; each request still
carries its intended send time, so the wait shows as latency from the intended time
(and in the request leg), never hidden. ``--inflight 1`` is the closed loop REQ is made
for.

A REQ socket waiting on a dead peer waits forever, so the requester waits at most
``--zmq-req-timeout`` (default: the driver's default ``--timeout``) and then sends its
next request: ``ZMQ_REQ_RELAXED`` allows that, and ``ZMQ_REQ_CORRELATE`` makes the socket
drop a reply to an abandoned request. Such a request shows as a timeout, never as a late
reply. ``ZMQ_IMMEDIATE`` keeps the round robin to connected responders only, so a killed
responder gets no further requests.

A REP socket answers one request at a time (receive, answer, send), its replies routed
back by the envelope REQ added; a reply to a requester that is gone is dropped by ZeroMQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence

import zmq

from msgbench.api.target import Requester, Service, Sink, Subscription, TargetError
from msgbench.targets.zmq.dealer import Ready
from msgbench.targets.zmq.waiting import POLLIN, POLLOUT

SocketFactory = Callable[[int], zmq.Socket[bytes]]
_NOBLOCK = zmq.NOBLOCK


class _Lockstep:
    """One REQ socket and the requests waiting for their turn on it."""

    def __init__(self, sock: zmq.Socket[bytes], sink: Sink, timeout_s: float) -> None:
        self.sock = sock
        self.sink = sink
        self.timeout_s = timeout_s
        self.waiting: deque[bytes] = deque()
        self.more = asyncio.Event()
        self.abandoned = 0
        """Requests whose reply did not come within the timeout (the driver counts them)."""
        self.waker = Ready(sock)
        self.task: asyncio.Task[None] = asyncio.ensure_future(self._run())
        self.task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        # a loop that dies sends nothing more: the result must say so, not go quiet
        if not task.cancelled() and task.exception() is not None:
            self.sink.disconnected(f"REQ loop failed: {task.exception()}")

    def add(self, payloads: Sequence[bytes]) -> None:
        """Queue requests behind the one outstanding (see the module docstring)."""
        self.waiting.extend(payloads)
        self.more.set()

    async def _run(self) -> None:
        while True:
            if not self.waiting:
                self.more.clear()
                await self.more.wait()
                continue
            await self._send(self.waiting.popleft())
            reply = await self._reply()
            if reply is None:
                self.abandoned += 1
            else:
                self.sink.deliver([reply])

    async def _send(self, payload: bytes) -> None:
        while True:
            try:
                self.sock.send(payload, _NOBLOCK)
                return
            except zmq.Again:  # no responder connected yet (ZMQ_IMMEDIATE)
                await self.waker.until(POLLOUT)

    async def _reply(self) -> bytes | None:
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                return self.sock.recv(_NOBLOCK)
            except zmq.Again:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                await self.waker.until(POLLIN, left)

    async def close(self) -> None:
        """Stop; requests still queued are never sent (the driver counts them)."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
        self.waker.close()
        self.sock.close(linger=0)


class ReqRequester(Requester):
    """A REQ socket per topic with responders; see the module docstring."""

    def __init__(self, steps: dict[str, _Lockstep]) -> None:
        self.steps = steps

    async def request(self, topic: str, payloads: Sequence[bytes]) -> None:
        """Queue the requests; each goes out once the one before it got its reply (or
        timed out). A topic no responder serves is owed no reply: nothing is sent."""
        step = self.steps.get(topic)
        if step is not None:
            step.add(payloads)

    async def close(self) -> None:
        """Close every REQ socket at once."""
        for step in self.steps.values():
            await step.close()


class RepResponder(Subscription):
    """A REP socket: receive one request, have the service answer it, send the reply."""

    def __init__(self, sock: zmq.Socket[bytes], service: Service) -> None:
        self.sock = sock
        self.service = service
        self.waker = Ready(sock)
        self.task: asyncio.Task[None] = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            try:
                request = self.sock.recv(_NOBLOCK)
            except zmq.Again:
                await self.waker.until(POLLIN, None)
                continue
            (reply,) = await self.service.answer([request])
            # REP never says Again here: its one pending reply always has room (the
            # requester waits for it); to a requester that is gone ZeroMQ drops it
            self.sock.send(reply, _NOBLOCK)

    async def close(self) -> None:
        """Stop answering and close the socket at once."""
        if self.waker.closed:
            return
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
        self.waker.close()
        self.sock.close(linger=0)


def open_requester(topics: Sequence[str], peers: Callable[[str], list[str]], sink: Sink,
                   socket: SocketFactory, timeout_ms: int) -> Requester:
    """A REQ socket per topic that has responders, connected to all of them (call on the
    worker's loop)."""
    steps: dict[str, _Lockstep] = {}
    for topic in topics:
        addrs = peers(topic)
        if not addrs:
            continue
        sock = socket(zmq.REQ)
        sock.setsockopt(zmq.REQ_RELAXED, 1)
        sock.setsockopt(zmq.REQ_CORRELATE, 1)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        for a in addrs:
            sock.connect(a)
        steps[topic] = _Lockstep(sock, sink, timeout_ms / 1000)
    return ReqRequester(steps)


def open_responder(addr: str, service: Service, socket: SocketFactory) -> Subscription:
    """A REP socket bound at ``addr`` (call on the worker's loop)."""
    sock = socket(zmq.REP)
    try:
        sock.bind(addr)
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        raise TargetError(f"responder cannot bind {addr}: {exc}") from None
    return RepResponder(sock, service)

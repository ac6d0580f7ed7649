"""``--zmq-mode dealer``: asynchronous request/reply, DEALER requesters and ROUTER responders.

Each responder binds a ROUTER socket; each requester has one DEALER socket per topic,
connected to every responder of that topic, and DEALER deals its requests to them in
turn, as many in flight as the run sends. A ROUTER prefixes every request with the
routing id of the pipe it came in on: the return address. The responder sends the reply
back with that id in front, and the ROUTER routes it to that one DEALER, so a reply can
only reach the socket that sent its request.

The classes here are shared with ``--zmq-mode rpc-broker`` (:mod:`.rpcbroker`), whose
requesters are the same DEALERs (connected to the broker instead) and whose responders
read the same ``[routing id, request]`` frames from a DEALER connected to the broker.

What the design does, shown and not hidden:

* requesters connect with ``ZMQ_IMMEDIATE``: requests go only to responders whose
  connection is up, so a killed responder stops getting requests at once; what it held
  gets no reply, and the driver counts those as timeouts. (Without it, a connect-side
  pipe outlives its connection and DEALER keeps dealing requests to the dead peer.)
* a DEALER waits at its high-water mark (or while no responder is connected): the
  requester's sends are backpressured, and the wait shows as latency from the intended
  send time.
* responders use ``ZMQ_ROUTER_MANDATORY``: a reply to a full pipe waits instead of being
  dropped; a reply to a requester that is gone is dropped (there is nobody to get it).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import Callable, Sequence
from typing import cast

import zmq

from msgbench.api.target import Requester, Service, Sink, Subscription, TargetError
from msgbench.kit.zmq_watch import LinkWatch
from msgbench.targets.zmq.waiting import POLLIN, POLLOUT, WAIT_SLICE_S, Waker, ZmqLinkLost

MAX_BATCH = 1024
"""Most messages taken from a socket at once (replies per ``deliver``, requests per
``Service.answer``); then the loop gets a turn."""
LINGER_MS = 1000
"""How long closing a requester may wait to flush the requests it queued; bounds a close."""

_NOBLOCK = zmq.NOBLOCK
_EVENTS = zmq.EVENTS

SocketFactory = Callable[[int], zmq.Socket[bytes]]
LostFn = Callable[[], str | None]


class Ready(Waker):
    """A :class:`Waker` whose :meth:`until` waits on a timer handle instead of
    ``asyncio.wait_for``, which costs about 20 us per wait (a future and its callbacks):
    on a round trip of a hundred microseconds, paid once per request per side, that is
    the design's latency inflated by msgbench. ``timeout_s=None`` waits for the edge alone
    (the caller cancels the task to stop it)."""

    async def until(self, flag: int, timeout_s: float | None = WAIT_SLICE_S) -> bool:
        """Wait until the socket has ``flag`` or ``timeout_s`` passed; True if it has it."""
        self.edge.clear()
        if self.closed or self.has(flag):  # clear first, then look: no edge is missed
            return not self.closed
        if timeout_s is None:
            await self.edge.wait()
        else:
            timer = self.loop.call_later(timeout_s, self.edge.set)
            try:
                await self.edge.wait()
            finally:
                timer.cancel()
        return not self.closed and self.has(flag)


class Duplex:
    """A socket the loop both reads and writes: one reader callback on its FD hands what
    arrives to ``on_batch`` and wakes a sender waiting for room.

    ZeroMQ's FD is edge-triggered and any send may consume the edge, so after each batch
    of sends the socket is read again (:meth:`kick`): no reply waits for a later edge.
    """

    def __init__(self, sock: zmq.Socket[bytes], on_batch: Callable[[list[bytes]], None]) -> None:
        self.sock = sock
        self.on_batch = on_batch
        self.loop = asyncio.get_running_loop()
        self.fd: int = sock.FD
        self.room = asyncio.Event()
        self.closed = False
        self._kicked = False
        self.loop.add_reader(self.fd, self._edge)
        self.kick()  # a pipe never read from signals nothing: read once to arm the FD

    def kick(self) -> None:
        """Read the socket soon (once, however often this is called before it runs)."""
        if not self._kicked:
            self._kicked = True
            self.loop.call_soon(self._edge)

    def _edge(self) -> None:
        self._kicked = False
        if self.closed:
            return
        recv = self.sock.recv
        batch: list[bytes] = []
        append = batch.append
        with contextlib.suppress(zmq.Again):
            for _ in range(MAX_BATCH):
                append(recv(_NOBLOCK))
        if batch:
            self.on_batch(batch)
        events = cast(int, self.sock.getsockopt(_EVENTS))  # also re-arms the edge
        if events & POLLOUT:
            self.room.set()
        if events & POLLIN:
            self.kick()  # a full batch, or more came meanwhile: the rest of the loop first

    async def send_all(self, frames: Sequence[bytes], lost: LostFn) -> None:
        """Send every frame in order, waiting at the high-water mark (or for a first peer);
        raises :class:`ZmqLinkLost` when ``lost()`` names a lost link while waiting."""
        send = super(zmq.Socket, self.sock).send  # the backend's: no keyword handling
        i, n = 0, len(frames)
        try:
            while i < n:
                try:
                    while i < n:
                        send(frames[i], _NOBLOCK)
                        i += 1
                except zmq.Again:
                    await self._wait_room(lost)
        finally:
            self.kick()

    async def _wait_room(self, lost: LostFn) -> None:
        while True:
            self.room.clear()
            if self.closed:
                raise ZmqLinkLost("socket closed while sending")
            if cast(int, self.sock.getsockopt(_EVENTS)) & POLLOUT:
                return
            self.kick()  # reading EVENTS may have taken the edge: look at the input too
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.room.wait(), WAIT_SLICE_S)
            reason = lost()
            if reason:
                raise ZmqLinkLost(reason)

    def close(self) -> None:
        """Stop reading (before the socket closes) and wake a waiting sender."""
        if not self.closed:
            self.closed = True
            self.loop.remove_reader(self.fd)
            self.room.set()


class DealerRequester(Requester):
    """One DEALER per topic; replies from all of them go to one sink.

    A topic no responder serves has no socket: its requests are owed no reply, so they
    are not sent (a DEALER without a peer would wait for one forever).
    """

    def __init__(self, socks: dict[str, zmq.Socket[bytes]], sink: Sink,
                 broker: bool = False) -> None:
        self.socks = socks
        self.sink = sink
        self.lost: str | None = None
        self.duplex = {t: Duplex(s, sink.deliver) for t, s in socks.items()}
        # through a broker, its loss is the requester's: say so (a responder that goes away
        # in the direct mode is only one peer less, shown by the timeouts)
        self.watches = [LinkWatch(s, lambda e: self._lost(f"lost the connection to the zmq "
                                                            f"rpc broker at {e}"))
                        for s in socks.values()] if broker else []

    def _lost(self, reason: str) -> None:
        if self.lost is None:
            self.lost = reason
            self.sink.disconnected(reason)

    async def request(self, topic: str, payloads: Sequence[bytes]) -> None:
        """Send each payload as one frame; waits while every pipe of the topic is full."""
        if self.lost:
            raise ZmqLinkLost(self.lost)
        duplex = self.duplex.get(topic)
        if duplex is not None:
            await duplex.send_all(payloads, lambda: self.lost)

    async def close(self) -> None:
        """Stop reading, then close each socket (flushing for at most :data:`LINGER_MS`)."""
        for w in self.watches:
            w.close()
        for t, sock in self.socks.items():
            self.duplex[t].close()
            sock.close(linger=LINGER_MS)


class RoutedResponder(Subscription):
    """Answers ``[routing id..., request]`` messages with ``[routing id..., reply]``.

    One task: take what the socket holds (at most :data:`MAX_BATCH`), have the service
    answer it, send the replies back on the ids they came with, and read again. The socket
    is a ROUTER (``dealer`` mode) or a DEALER connected to a broker's backend (``rpc-broker``).
    """

    def __init__(self, sock: zmq.Socket[bytes], service: Service,
                 on_close: Callable[[], None] | None = None) -> None:
        self.sock = sock
        self.service = service
        self.on_close = on_close
        self.waker = Ready(sock)
        self.dropped = 0
        """Replies to requesters that were gone (ROUTER: host unreachable)."""
        self.task: asyncio.Task[None] = asyncio.ensure_future(self._run())

    def _take(self) -> list[list[bytes]]:
        recv = self.sock.recv_multipart
        out: list[list[bytes]] = []
        with contextlib.suppress(zmq.Again):
            for _ in range(MAX_BATCH):
                out.append(recv(_NOBLOCK))
        return out

    async def _run(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                await self.waker.until(POLLIN, None)
                continue
            replies = await self.service.answer([m[-1] for m in batch])
            for m, reply in zip(batch, replies, strict=True):
                m[-1] = reply
                await self._send(m)

    async def _send(self, frames: list[bytes]) -> None:
        while True:
            try:
                self.sock.send_multipart(frames, _NOBLOCK)
                return
            except zmq.ZMQError as exc:
                if exc.errno == errno.EHOSTUNREACH:  # the requester is gone: nobody to tell
                    self.dropped += 1
                    return
                if exc.errno != errno.EAGAIN:
                    raise
            await self.waker.until(POLLOUT)  # its pipe is full: wait for room

    async def close(self) -> None:
        """Stop answering and close the socket at once (unanswered requests get no reply)."""
        if self.waker.closed:
            return
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
        if self.on_close is not None:
            self.on_close()
        self.waker.close()
        self.sock.close(linger=0)


def open_requester(topics: Sequence[str], peers: Callable[[str], list[str]], sink: Sink,
                   socket: SocketFactory, broker: bool = False) -> Requester:
    """A DEALER per topic that has responders (``peers(topic)``: their addresses, or the
    broker's frontend for it), connected to every one of them."""
    socks: dict[str, zmq.Socket[bytes]] = {}
    for topic in topics:
        addrs = peers(topic)
        if not addrs:
            continue
        sock = socket(zmq.DEALER)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        for a in addrs:
            sock.connect(a)
        socks[topic] = sock
    return DealerRequester(socks, sink, broker)


def open_responder(addr: str, service: Service, socket: SocketFactory) -> Subscription:
    """A ROUTER bound at ``addr`` answering each request on the id it came from."""
    sock = socket(zmq.ROUTER)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    try:
        sock.bind(addr)
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        raise TargetError(f"responder cannot bind {addr}: {exc}") from None
    return RoutedResponder(sock, service)

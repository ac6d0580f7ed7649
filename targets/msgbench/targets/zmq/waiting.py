"""Waiting on a ZeroMQ socket from asyncio, and sending with backpressure (task modes).

A ZeroMQ socket's FD is edge-triggered and says only that its events *may* have
changed: the truth is ``ZMQ_EVENTS``, and reading that re-arms the edge. A
:class:`Waker` keeps one reader on the FD for the socket's life and turns each edge
into an :class:`asyncio.Event`; :meth:`Waker.until` re-reads ``ZMQ_EVENTS`` after
every wake. PUSH and DEALER sockets, unlike PUB, say ``Again`` at the high-water
mark (or with no peer yet), so :func:`send_all` waits there: the design's
backpressure reaches the publisher.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import cast

import zmq

WAIT_SLICE_S = 0.25
"""Longest single wait before the caller looks again (at a lost link, a close)."""

_NOBLOCK = zmq.NOBLOCK
_EVENTS = zmq.EVENTS
POLLIN = zmq.POLLIN
POLLOUT = zmq.POLLOUT


class ZmqLinkLost(ConnectionError):
    """A socket lost its connection to the process it depends on (forwarder, broker)."""


class Waker:
    """One reader on a socket's FD; :meth:`until` waits for an event bit (see module doc)."""

    def __init__(self, sock: zmq.Socket[bytes]) -> None:
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.fd: int = sock.FD
        self.edge = asyncio.Event()
        self.closed = False
        self.loop.add_reader(self.fd, self.edge.set)

    def has(self, flag: int) -> bool:
        """Whether the socket has ``flag`` (POLLIN / POLLOUT) now; re-arms the FD."""
        return bool(cast(int, self.sock.getsockopt(_EVENTS)) & flag)

    async def until(self, flag: int, timeout_s: float = WAIT_SLICE_S) -> bool:
        """Wait until the socket has ``flag`` or ``timeout_s`` passed; True if it has it."""
        self.edge.clear()
        if self.closed or self.has(flag):  # clear first, then look: no edge is missed
            return not self.closed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.edge.wait(), timeout_s)
        return not self.closed and self.has(flag)

    def close(self) -> None:
        """Stop watching (before the socket closes) and wake whoever waits."""
        if not self.closed:
            self.closed = True
            self.loop.remove_reader(self.fd)
            self.edge.set()


async def send_all(sock: zmq.Socket[bytes], waker: Waker, frames: Sequence[bytes],
                   lost: Callable[[], str | None]) -> None:
    """Send every frame in order, waiting at the high-water mark (or for a first peer).

    Raises :class:`ZmqLinkLost` when ``lost()`` names a lost link while waiting.
    """
    send = super(zmq.Socket, sock).send  # the backend's send: no keyword handling per call
    i, n = 0, len(frames)
    while i < n:
        try:
            while i < n:
                send(frames[i], _NOBLOCK)
                i += 1
        except zmq.Again:
            while not await waker.until(POLLOUT):
                reason = lost()
                if reason:
                    raise ZmqLinkLost(reason) from None
                if waker.closed:
                    raise ZmqLinkLost("socket closed while sending") from None


def recv_some(sock: zmq.Socket[bytes], most: int) -> list[bytes]:
    """Up to ``most`` messages already queued at ``sock``, without waiting."""
    recv = sock.recv
    out: list[bytes] = []
    append = out.append
    with contextlib.suppress(zmq.Again):
        for _ in range(most):
            append(recv(_NOBLOCK))
    return out

"""``--zmq-mode mesh`` and ``proxy``: the PUB/SUB sockets of ``--pattern broadcast``.

Mesh: a publisher binds its PUB socket at its own address and every subscriber
connects to all of them; proxy: both sides connect to the forwarder (XSUB for
publishers, XPUB for subscribers), whose loss a socket monitor turns into an
exception from ``publish`` and ``Sink.disconnected``.

Receiving drains a plain (non-asyncio) socket in batches from the loop's
reader callback: one ``deliver`` per drain instead of one await per message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import numpy as np
import zmq

from msgbench.api.target import JSON, Publisher, Sink, Subscription, TargetError
from msgbench.kit.zmq_watch import LinkWatch, readable
from msgbench.targets.zmq.pipeline import SocketFactory
from msgbench.targets.zmq.settings import topic_prefix
from msgbench.targets.zmq.waiting import ZmqLinkLost

MAX_BATCH = 1024
"""Messages taken from a socket per reader callback; then the loop gets a turn."""
LINGER_MS = 1000
"""How long closing a publisher may wait to flush what it queued; bounds a close."""
NODROP_WAIT_MS = 2
"""How long a ``--zmq-nodrop`` publisher at the high-water mark blocks in ``send`` for room
before it gives the worker's loop a turn. ZeroMQ wakes a blocked send the moment there is
room; sleeping on a timer instead idles the pipe for a whole millisecond tick."""

_NOBLOCK = zmq.NOBLOCK


class PubSocket(Publisher):
    """A PUB (or ``--zmq-nodrop`` XPUB) socket; see the module docstring."""

    def __init__(self, sock: zmq.Socket[bytes], proxy: str | None, nodrop: bool) -> None:
        self.sock = sock
        self.nodrop = nodrop
        self.prefixes: dict[str, bytes] = {}
        self.lost: str | None = None
        self.watch = LinkWatch(sock, self._lost) if proxy else None
        # The backend's send, without the Python wrapper's keyword handling: about a third
        # of the per-message cost of sending.
        self._send = super(zmq.Socket, sock).send

    def _lost(self, endpoint: str) -> None:
        self.lost = self.lost or f"lost the connection to the zmq forwarder at {endpoint}"

    def _prefix(self, topic: str) -> bytes:
        if self.lost:
            raise ZmqLinkLost(self.lost)
        prefix = self.prefixes.get(topic)
        if prefix is None:
            prefix = self.prefixes[topic] = topic_prefix(topic)
        return prefix

    async def publish(self, topic: str, payloads: Sequence[bytes]) -> None:
        """Queue every payload; at the high-water mark PUB drops, ``--zmq-nodrop`` waits."""
        prefix = self._prefix(topic)
        await self._send_all([prefix + p for p in payloads])

    async def publish_block(self, topic: str, block: bytes, count: int, size: int) -> None:
        """:meth:`publish` for payloads lying back to back: prefixed all at once with numpy."""
        prefix = self._prefix(topic)
        rows = np.empty((count, len(prefix) + size), np.uint8)
        rows[:, : len(prefix)] = np.frombuffer(prefix, np.uint8)
        rows[:, len(prefix) :] = np.frombuffer(block, np.uint8, count * size).reshape(count, size)
        data, step = rows.tobytes(), len(prefix) + size
        await self._send_all([data[i : i + step] for i in range(0, count * step, step)])

    async def _send_all(self, messages: list[bytes]) -> None:
        send = self._send
        if not self.nodrop:  # a PUB socket never says Again: it drops at the mark
            for m in messages:
                send(m, _NOBLOCK)
            return
        i, n = 0, len(messages)
        while i < n:
            try:
                while i < n:
                    send(messages[i], _NOBLOCK)
                    i += 1
            except zmq.Again:  # XPUB_NODROP at the mark: wait for room
                # An XPUB reports POLLOUT even when full (libzmq's distributor always claims
                # room), so there is no FD edge to await: block briefly in ZeroMQ instead
                # (SNDTIMEO is NODROP_WAIT_MS), then let the loop run.
                try:
                    send(messages[i], 0)
                    i += 1
                except zmq.Again:
                    if self.lost:
                        raise ZmqLinkLost(self.lost) from None
                    await asyncio.sleep(0)

    async def close(self) -> None:
        """Close, letting ZeroMQ flush for at most :data:`LINGER_MS`."""
        if self.watch is not None:
            self.watch.close()
        self.sock.close(linger=LINGER_MS)


class SubSocket(Subscription):
    """A SUB socket drained in batches from the loop's reader callback."""

    def __init__(self, sock: zmq.Socket[bytes], cut: int | None, sink: Sink,
                 proxy: str | None) -> None:
        self.sock = sock
        self.sink = sink
        self.cut = cut
        self.closed = False
        self.loop = asyncio.get_running_loop()
        self.fd: int = sock.FD
        self.watch = LinkWatch(sock, self._lost) if proxy else None
        self.loop.add_reader(self.fd, self._drain)
        # A pipe that was never read from signals nothing: read once to arm the FD.
        self.loop.call_soon(self._drain)

    def _lost(self, endpoint: str) -> None:
        self.sink.disconnected(f"lost the connection to the zmq forwarder at {endpoint}")

    def _drain(self) -> None:
        if self.closed:
            return
        recv = self.sock.recv
        batch: list[bytes] = []
        append = batch.append
        cut = self.cut
        more = True
        try:
            if cut is not None:  # the sink skips the prefix itself: no copy per message
                for _ in range(MAX_BATCH):
                    append(recv(_NOBLOCK))
            else:  # topics of different lengths: read each message's length byte
                for _ in range(MAX_BATCH):
                    m = recv(_NOBLOCK)
                    append(m[m[0] + 1 :])
        except zmq.Again:
            # Edge-triggered FD: it will not fire again for messages already queued,
            # so ask ZeroMQ directly before waiting for the next edge.
            more = readable(self.sock)
        if batch:
            self.sink.deliver(batch, cut or 0)
        if more:
            self.loop.call_soon(self._drain)  # full batch: let the rest of the loop run first

    async def close(self) -> None:
        """Stop receiving and close the socket at once (nothing to flush)."""
        if self.closed:
            return
        self.closed = True
        if self.watch is not None:
            self.watch.close()
        self.loop.remove_reader(self.fd)
        self.sock.close(linger=0)


def open_publisher(endpoint: Mapping[str, JSON], pub_id: int, socket: SocketFactory,
                   nodrop: bool) -> PubSocket:
    """Publisher ``pub_id``'s PUB socket bound to its mesh address, or connected to the
    forwarder's XSUB side; with ``nodrop`` an XPUB that waits at the high-water mark."""
    sock = socket(zmq.XPUB if nodrop else zmq.PUB)
    if nodrop:
        sock.setsockopt(zmq.XPUB_NODROP, 1)
        sock.setsockopt(zmq.SNDTIMEO, NODROP_WAIT_MS)
    proxy: str | None = None
    try:
        if endpoint["mode"] == "mesh":
            addr = endpoint["pubs"][pub_id]
            sock.bind(addr)
        else:
            proxy = addr = endpoint["xsub"]
            sock.connect(addr)
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        raise TargetError(f"publisher {pub_id} cannot use {addr}: {exc}") from None
    return PubSocket(sock, proxy, nodrop)


def open_subscriber(endpoint: Mapping[str, JSON], topics: Sequence[str], sink: Sink,
                    socket: SocketFactory) -> SubSocket:
    """Subscribe first, then connect to every publisher (mesh) or the forwarder's XPUB side
    (proxy): ``topics`` by their exact prefix (see :func:`topic_prefix`)."""
    sock = socket(zmq.SUB)
    prefixes = [topic_prefix(t) for t in topics]
    for p in prefixes:
        sock.setsockopt(zmq.SUBSCRIBE, p)
    lengths = {len(p) for p in prefixes}
    cut = lengths.pop() if len(lengths) == 1 else None
    proxy: str | None = None
    if endpoint["mode"] == "mesh":
        for addr in endpoint["pubs"]:
            sock.connect(addr)
    else:
        proxy = endpoint["xpub"]
        sock.connect(proxy)
    return SubSocket(sock, cut, sink, proxy)

"""The producers and workers of ``--zmq-mode broker`` (the broker is :mod:`.lbbroker`).

A producer is a DEALER connected to the broker's frontend, sending one frame per
task (``len(topic) | topic | payload``) and waiting at its high-water mark. A worker
is a DEALER connected to the backend with a stable id (``w<sub_id>``): it says READY
with its credit (``--zmq-credit``, default 1), takes what the broker sends, hands it
to its sink and, once the work is done, gives the credit back. A socket monitor turns
a lost connection to the broker into an exception from ``publish`` and
``Sink.disconnected``, as in proxy mode.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence

import numpy as np
import zmq

from msgbench.api.target import JSON, Publisher, Sink, Subscription
from msgbench.kit.zmq_watch import LinkWatch
from msgbench.targets.zmq.lbbroker import CREDIT_KIND, READY_KIND
from msgbench.targets.zmq.pipeline import LINGER_MS, SocketFactory, TaskWorker
from msgbench.targets.zmq.settings import topic_prefix
from msgbench.targets.zmq.waiting import Waker, ZmqLinkLost, send_all


def _lost_text(endpoint: str) -> str:
    return f"lost the connection to the zmq broker at {endpoint}"


class DealerPublisher(Publisher):
    """A producer: prefixes each task with its topic and sends it to the broker."""

    def __init__(self, sock: zmq.Socket[bytes]) -> None:
        self.sock = sock
        self.waker = Waker(sock)
        self.prefixes: dict[str, bytes] = {}
        self.lost: str | None = None
        self.watch = LinkWatch(sock, self._lost)

    def _lost(self, endpoint: str) -> None:
        self.lost = self.lost or _lost_text(endpoint)

    def _prefix(self, topic: str) -> bytes:
        if self.lost:
            raise ZmqLinkLost(self.lost)
        prefix = self.prefixes.get(topic)
        if prefix is None:
            prefix = self.prefixes[topic] = topic_prefix(topic)
        return prefix

    async def publish(self, topic: str, payloads: Sequence[bytes]) -> None:
        """Send every task; waits while the broker (and so every worker) is full."""
        prefix = self._prefix(topic)
        await send_all(self.sock, self.waker, [prefix + p for p in payloads],
                       lambda: self.lost)

    async def publish_block(self, topic: str, block: bytes, count: int, size: int) -> None:
        """:meth:`publish` for payloads lying back to back: prefixed all at once with numpy."""
        prefix = self._prefix(topic)
        rows = np.empty((count, len(prefix) + size), np.uint8)
        rows[:, : len(prefix)] = np.frombuffer(prefix, np.uint8)
        rows[:, len(prefix) :] = np.frombuffer(block, np.uint8, count * size).reshape(count, size)
        data, step = rows.tobytes(), len(prefix) + size
        await send_all(self.sock, self.waker,
                       [data[i : i + step] for i in range(0, count * step, step)],
                       lambda: self.lost)

    async def close(self) -> None:
        """Close, letting ZeroMQ flush for at most :data:`LINGER_MS`."""
        self.watch.close()
        self.waker.close()
        self.sock.close(linger=LINGER_MS)


def open_publisher(endpoint: Mapping[str, JSON], socket: SocketFactory) -> Publisher:
    """A producer DEALER connected to the broker's frontend."""
    sock = socket(zmq.DEALER)
    sock.connect(endpoint["frontend"])
    return DealerPublisher(sock)


def open_worker(endpoint: Mapping[str, JSON], sub_id: int, topic: str, sink: Sink,
                socket: SocketFactory, credit: int) -> Subscription:
    """A worker DEALER: READY with ``credit``, then credit back after each batch's work."""
    sock = socket(zmq.DEALER)
    sock.setsockopt(zmq.ROUTING_ID, f"w{sub_id}".encode())
    sock.connect(endpoint["backend"])
    prefix = topic_prefix(topic)
    # the connect side queues these even before the connection is up
    sock.send_multipart([READY_KIND, prefix, str(credit).encode()])
    watch = LinkWatch(sock, lambda endpoint: sink.disconnected(_lost_text(endpoint)))

    def done(count: int) -> None:
        # the whole batch is done: the broker may send as many again. The pipe to a live
        # broker never fills with these (it reads them first); to a dead one the watch
        # has already reported the loss.
        with contextlib.suppress(zmq.Again):
            sock.send_multipart([CREDIT_KIND, prefix, str(count).encode()], zmq.NOBLOCK)

    return TaskWorker(sock, sink, lambda: credit, done, watch.close)

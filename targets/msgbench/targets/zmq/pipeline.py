"""``--zmq-mode pipeline``: the zguide's ventilator, PUSH -> workers' PULL.

Each publisher binds one PUSH socket per topic; each member of a topic's group
connects a PULL socket to that topic's PUSH of every publisher and hands what it
receives to its sink, one batch at a time (the driver does ``--work`` there).

What the design does, shown and not hidden:

* **round-robin pre-assignment**: PUSH deals messages to its connected pipes in
  turn, whatever the workers' speed, and a pipe takes up to the high-water mark
  (plus the kernel's socket buffers) before PUSH skips it. A slow worker gets as
  many tasks as a fast one until its queues are full; the first worker to connect
  gets every task until the others do. The per-subscriber ``delivered`` shows it.
* **no acknowledgements**: what sits in a killed worker's queues (and in the
  PUSH pipe to it) is gone. The driver counts those tasks as lost, exactly.
* **backpressure**: PUSH never drops; when every pipe is full (or no worker is
  connected yet) the publisher waits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence

import zmq

from msgbench.api.target import JSON, Publisher, Sink, Subscription, TargetError
from msgbench.targets.zmq.waiting import POLLIN, Waker, recv_some, send_all

MAX_BATCH = 1024
"""Most messages a pipeline worker takes from its socket at once; they are already its
own (PUSH assigned them), so the batch size does not change who does what."""
LINGER_MS = 1000
"""How long closing a sender may wait to flush what it queued; bounds a close."""

SocketFactory = Callable[[int], zmq.Socket[bytes]]


class TaskWorker(Subscription):
    """A task loop: take what the socket holds (at most ``most``), hand it to the sink,
    wait for the work, then call ``done(count)`` (a broker worker asks for more there).

    Shared by the pipeline and broker modes; ``close`` stops the loop and closes the socket.
    """

    def __init__(self, sock: zmq.Socket[bytes], sink: Sink, most: Callable[[], int],
                 done: Callable[[int], None] | None = None,
                 on_close: Callable[[], None] | None = None) -> None:
        self.sock = sock
        self.sink = sink
        self.most = most
        self.done = done
        self.on_close = on_close
        self.waker = Waker(sock)
        self.task: asyncio.Task[None] = asyncio.ensure_future(self._run())
        self.task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        # a loop that dies takes no more tasks: the result must say so, not go quiet
        if not task.cancelled() and task.exception() is not None:
            self.sink.disconnected(f"task loop failed: {task.exception()}")

    async def _run(self) -> None:
        handle = self.sink.handle
        while True:
            batch = recv_some(self.sock, self.most())
            if not batch:
                await self.waker.until(POLLIN)
                continue
            await handle(batch)
            if self.done is not None:
                self.done(len(batch))

    async def close(self) -> None:
        """Stop taking tasks and close the socket at once (what it held is not done)."""
        if self.waker.closed:
            return
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        if self.on_close is not None:
            self.on_close()
        self.waker.close()
        self.sock.close(linger=0)


class PushPublisher(Publisher):
    """One bound PUSH socket per topic; :meth:`publish` waits at the high-water mark."""

    def __init__(self, socks: Mapping[str, zmq.Socket[bytes]]) -> None:
        self.socks = dict(socks)
        self.wakers = {t: Waker(s) for t, s in socks.items()}

    async def publish(self, topic: str, payloads: Sequence[bytes]) -> None:
        """Deal ``payloads`` to the topic's workers in turn (see the module docstring)."""
        sock = self.socks.get(topic)
        if sock is None:
            raise TargetError(f"publisher has no PUSH socket for topic {topic!r}")
        await send_all(sock, self.wakers[topic], payloads, lambda: None)

    async def close(self) -> None:
        """Close every socket, letting ZeroMQ flush for at most :data:`LINGER_MS`."""
        for t, sock in self.socks.items():
            self.wakers[t].close()
            sock.close(linger=LINGER_MS)


def open_publisher(endpoint: Mapping[str, JSON], pub_id: int, socket: SocketFactory
                   ) -> Publisher:
    """Bind publisher ``pub_id``'s PUSH sockets, one per topic, at the endpoint's addresses."""
    socks: dict[str, zmq.Socket[bytes]] = {}
    for topic, addr in zip(endpoint["topics"], endpoint["push"][pub_id], strict=True):
        sock = socket(zmq.PUSH)
        try:
            sock.bind(addr)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            for s in socks.values():
                s.close(linger=0)
            raise TargetError(f"publisher {pub_id} cannot bind {addr}: {exc}") from None
        socks[topic] = sock
    return PushPublisher(socks)


def open_worker(endpoint: Mapping[str, JSON], topic: str, sink: Sink, socket: SocketFactory
                ) -> Subscription:
    """A PULL socket connected to ``topic``'s PUSH of every publisher, as a task loop
    (call on the worker's loop)."""
    index = list(endpoint["topics"]).index(topic)
    sock = socket(zmq.PULL)
    for per_pub in endpoint["push"]:
        sock.connect(per_pub[index])
    return TaskWorker(sock, sink, lambda: MAX_BATCH)

"""Tasks on RabbitMQ: a work queue per (group, topic), its members competing consumers.

Each member is a connection of its own consuming its group's queue
(:meth:`~msgbench.targets.rabbitmq.layout.Layout.shared_queue`) with ``Basic.Qos``
prefetch ``--amqp-prefetch``: the broker hands a member at most that many unacked tasks
and gives the rest to the others. Deliveries are parsed a socket read at a time (as for
broadcast) and queued in the member; one task per member hands them to
:meth:`~msgbench.api.target.Sink.handle` in delivery order, at most :data:`HANDLE_MAX`
at a time, and acknowledges them only once it returns, as ``--amqp-ack`` says:

* ``auto``: consumed with no-ack: the broker forgets a task once it has sent it
  (at most once: a killed member loses what it held, prefetch does not apply);
* ``each``: one ``Basic.Ack`` per task;
* ``multi:N``: one multiple ack once N tasks are done, and after :data:`ACK_IDLE_S`
  without a new task, so a quiet member holds nothing unacknowledged for long.

A member killed (its TCP connection drops) leaves its unacked tasks to the broker, which
requeues them and delivers them to another member with ``redelivered`` set: handed over
with ``redelivered=True``. ``--amqp-nack-every K`` nacks every K-th fresh task with
requeue instead of doing it, so the broker delivers it again (the nack goes out at once,
before any later multiple ack could cover it; a redelivered task is never nacked again).
Handling in delivery order is what makes a multiple ack of the last done tag exact.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence

import numpy as np
from pamqp import commands

from msgbench.api.target import QueueDepth, Sink, Subscription
from msgbench.targets.rabbitmq.client import declare_exchanges, declare_queue
from msgbench.targets.rabbitmq.frames import Shape, tags_and_flags
from msgbench.targets.rabbitmq.layout import Layout
from msgbench.targets.rabbitmq.wire import (
    AmqpConnection,
    AmqpError,
    AmqpUrl,
    Consumer,
    ack_frame,
    connect,
    requeue_frame,
)

HANDLE_MAX = 64
"""Most tasks one ``Sink.handle`` call gets: few enough that a batch's last task does not
wait long behind the others' ``--work``, enough that zero-work runs measure the broker."""
ACK_IDLE_S = 0.05
"""``multi:N``: done tasks are acknowledged after this long without a new one."""
CLOSE_TIMEOUT_S = 2.0
DEPTH_TIMEOUT_S = 0.8
"""A queue-depth question not answered within this gets ``None`` (the driver asks once a
second and needs the answer within one)."""


class Acks:
    """Acknowledges done deliveries as ``--amqp-ack`` says (see the module docstring).

    Deliveries are done in tag order, so a multiple ack of the last done tag covers
    exactly the done ones (a nacked one is settled already and is not covered again)."""

    def __init__(self, conn: AmqpConnection, layout: Layout) -> None:
        self.conn = conn
        self.manual = layout.ack != "auto"
        self.each = layout.ack == "each"
        self.every = max(1, layout.ack_every)
        self.last_done = 0
        self.unacked = 0

    def done(self, tags: Sequence[int]) -> None:
        """``tags`` are done: ack them now (each) or once enough are (multi)."""
        if not self.manual or not tags or self.conn.error is not None:
            return
        if self.each:
            self.conn.write(b"".join(ack_frame(t, False) for t in tags))
            return
        self.last_done = tags[-1]
        self.unacked += len(tags)
        if self.unacked >= self.every:
            self.flush()

    def flush(self) -> None:
        """Ack every done delivery not acked yet (one multiple ack)."""
        if self.unacked and self.conn.error is None:
            self.conn.write(ack_frame(self.last_done, True))
        self.unacked = 0

    async def idle(self, wake: asyncio.Event) -> None:
        """Wait for ``wake``; after :data:`ACK_IDLE_S` of waiting, flush what is done."""
        wake.clear()
        if not self.unacked:
            await wake.wait()
            return
        try:
            await asyncio.wait_for(wake.wait(), ACK_IDLE_S)
        except TimeoutError:
            self.flush()


class AckedConsumer(Subscription, Consumer):
    """A consumer that hands its deliveries to a task loop and acknowledges what the loop
    finished (a group member, a responder); subclasses set these attributes."""

    conn: AmqpConnection
    acks: Acks
    consumer_tags: list[str]
    wake: asyncio.Event
    closed: bool
    task: asyncio.Task[None]

    async def close(self) -> None:
        """Stop consuming; ack what was done; what was not is requeued by the broker."""
        conn = self.conn
        if conn.error is None:
            with contextlib.suppress(AmqpError):
                for tag in self.consumer_tags:
                    await conn.call(commands.Basic.Cancel(consumer_tag=tag),
                                    commands.Basic.CancelOk, timeout=CLOSE_TIMEOUT_S)
        self.closed = True
        self.wake.set()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.acks.flush()
        conn.close()


class TaskMember(AckedConsumer):
    """One competing consumer of its group's queues (see the module docstring)."""

    def __init__(self, conn: AmqpConnection, sink: Sink, layout: Layout,
                 tags: Sequence[str]) -> None:
        self.conn = conn
        self.sink = sink
        self.acks = Acks(conn, layout)
        self.manual = self.acks.manual
        self.nack_every = layout.nack_every if self.manual else 0
        self.consumer_tags = list(tags)
        self.fresh = 0
        """Tasks delivered for the first time so far (for ``--amqp-nack-every``)."""
        self.pending: deque[tuple[list[bytes], list[int], bool]] = deque()
        self.wake = asyncio.Event()
        self.closed = False
        conn.consumer = self
        conn.on_lost = self._lost
        conn.on_cancel = lambda: self._lost("RabbitMQ cancelled the consumer "
                                            "(its queue was deleted?)")
        self.task = asyncio.ensure_future(self._run())

    def _lost(self, reason: str) -> None:
        self.wake.set()
        if not self.closed:
            self.sink.disconnected(reason)

    # -- deliveries (called from the connection's data_received) ------------
    def block(self, buf: bytes, first: int, count: int, shape: Shape) -> None:
        """Cut the run into payloads and queue them, split where ``redelivered`` changes."""
        tags, again = tags_and_flags(buf, first, count, shape)
        at, n = first + shape.body_at, shape.body_size
        stride = shape.stride
        bodies = [buf[p : p + n] for p in range(at, at + count * stride, stride)]
        cuts = np.flatnonzero(np.diff(again.view(np.int8))) + 1
        start = 0
        for end in [*cuts.tolist(), count]:
            self._queue(bodies[start:end], tags[start:end].tolist(), bool(again[start]))
            start = end
        self.wake.set()

    def one(self, body: bytes, tag: int, redelivered: bool = False) -> None:
        """A delivery outside a run (a body split over frames)."""
        self._queue([body], [tag], redelivered)
        self.wake.set()

    def _queue(self, bodies: list[bytes], tags: list[int], redelivered: bool) -> None:
        if self.nack_every and not redelivered:
            bodies, tags = self._nack_some(bodies, tags)
        for i in range(0, len(bodies), HANDLE_MAX):
            self.pending.append((bodies[i : i + HANDLE_MAX], tags[i : i + HANDLE_MAX],
                                 redelivered))

    def _nack_some(self, bodies: list[bytes], tags: list[int]) -> tuple[list[bytes], list[int]]:
        """Nack (requeue) every ``nack_every``-th fresh task at once; return the rest."""
        k, base = self.nack_every, self.fresh
        self.fresh += len(tags)
        keep = [i for i in range(len(tags)) if (base + i + 1) % k]
        if len(keep) == len(tags):
            return bodies, tags
        if self.conn.error is None:
            self.conn.write(b"".join(requeue_frame(tags[i]) for i in range(len(tags))
                                     if (base + i + 1) % k == 0))
        return [bodies[i] for i in keep], [tags[i] for i in keep]

    # -- the member's work ---------------------------------------------------
    async def _run(self) -> None:
        while not self.closed:
            if not self.pending:
                self.wake.clear()
                await self.acks.idle(self.wake)
                continue
            if self.conn.error is not None:
                return  # requeued by the broker: not ours to do any more
            bodies, tags, redelivered = self.pending.popleft()
            if bodies:
                await self.sink.handle(bodies, redelivered)
            self.acks.done(tags)


async def open_member(url: AmqpUrl, layout: Layout, group: str, topics: Sequence[str],
                      sink: Sink) -> TaskMember:
    """Declare ``group``'s queue for each topic, bind it, consume; returns once consuming."""
    conn = await connect(url)
    try:
        await declare_exchanges(conn, layout)
        if layout.prefetch and layout.ack != "auto":
            await conn.call(commands.Basic.Qos(prefetch_count=layout.prefetch),
                            commands.Basic.QosOk)
        tags = [f"msgbench.{i}" for i in range(len(topics))]
        member = TaskMember(conn, sink, layout, tags)
        for tag, topic in zip(tags, topics, strict=True):
            queue = await declare_queue(conn, layout.shared_queue(group, topic))
            await conn.call(commands.Queue.Bind(queue=queue, exchange=layout.exchange(topic),
                                                routing_key=layout.routing_key(topic)),
                            commands.Queue.BindOk)
            await conn.call(commands.Basic.Consume(queue=queue, consumer_tag=tag,
                                                   no_ack=not member.manual),
                            commands.Basic.ConsumeOk)
    except BaseException:
        conn.close()
        raise
    return member


class DepthProbe:
    """Asks the broker how many tasks wait in a queue, on a connection of its own.

    A passive ``Queue.Declare`` answers with the queue's ready count (``message_count``);
    the unacked count is not in AMQP 0-9-1's answers (only the management API has it), so
    it stays ``None``. A failed question (a queue already gone closes the channel) drops
    the connection; the next question opens a new one.
    """

    def __init__(self, url: AmqpUrl, layout: Layout) -> None:
        self.url = url
        self.layout = layout
        self.conn: AmqpConnection | None = None

    async def depth(self, topic: str, group: str) -> QueueDepth | None:
        """``group``'s queue for ``topic`` now; ``None`` when the broker does not answer."""
        name = self.layout.shared_queue(group, topic).name
        try:
            return await asyncio.wait_for(self._ask(name), DEPTH_TIMEOUT_S)
        except (AmqpError, TimeoutError):
            self.close()
            return None

    async def _ask(self, name: str) -> QueueDepth:
        if self.conn is None or self.conn.error is not None:
            self.conn = await connect(self.url)
        ok = await self.conn.call(commands.Queue.Declare(queue=name, passive=True),
                                  commands.Queue.DeclareOk)
        return QueueDepth(waiting=int(ok.message_count or 0), unacked=None)

    def close(self) -> None:
        """Drop the connection."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None

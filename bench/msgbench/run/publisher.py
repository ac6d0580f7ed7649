"""The driver's side of a publisher inside a worker.

:class:`PublisherRunner` stamps envelopes and follows the open-loop schedule (or
sends flat out in closed loop); its publish delays go into the worker's
:class:`~msgbench.run.sink.Buffers`.

At a fixed rate each message is handed over at its own intended time, waited for with a
:class:`~msgbench.run.pacer.Pacer` (a timerfd on the loop, microseconds late); only when
the sends fall behind (a stall, or a rate above what one send at a time sustains) does a
batch go out, and then of exactly the messages already due, each stamped with its
intended time, so the lateness shows in latency and in the publish delay.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import numpy.typing as npt

from msgbench.api.target import Publisher
from msgbench.run.pacer import Pacer, acquire_pacer, release_pacer
from msgbench.run.sink import Buffers
from msgbench.workload.config import RunConfig
from msgbench.workload.envelope import HEADER, Kind, pack_block, padding
from msgbench.workload.schedule import Schedule

PACK_VECTOR_MIN = 16
"""From this many messages to one topic on, a batch is encoded with numpy in one go (a fixed
cost of some microseconds, against about 0.3 us a message packed one by one)."""

_PROBE = int(Kind.PROBE)
_WARMUP = int(Kind.WARMUP)
_MEASURE = int(Kind.MEASURE)


class PublisherRunner:
    """Stamps and sends one publisher's messages; topics take turns message by message.

    ``pacer`` is the clock the open loop waits on; by default the worker loop's shared one
    (:func:`~msgbench.run.pacer.acquire_pacer`) when the run starts. Tests pass a fake clock.
    """

    def __init__(
        self, pub_id: int, publisher: Publisher, config: RunConfig, buffers: Buffers,
        topics: tuple[int, ...] | None = None,
        *, pacer: Pacer | None = None,
    ) -> None:
        self.pub_id = pub_id
        self.publisher = publisher
        names = config.topic_names()
        self.topic_ids = topics if topics is not None else tuple(range(len(names)))
        """The topics this publisher sends to, in turn (all, unless a requester's own)."""
        self.topics = tuple(names[t] for t in self.topic_ids)
        self.rate = config.rate
        self.batch = config.effective_batch()
        self.size = config.size
        self.pad = padding(config.size)
        self.seq = [0] * len(names)
        self.measured = [0] * len(names)
        """MEASURE messages sent, per topic id."""
        self.published_total = 0
        self._delay = buffers.publish_delay
        self._pacer = pacer

    async def probe(self) -> None:
        """Send one PROBE message on every topic."""
        now = time.monotonic_ns()
        for t, name in zip(self.topic_ids, self.topics, strict=True):
            await self.publisher.publish(name, [self._pack(_PROBE, t, now, now)])

    def _pack(self, kind: int, topic: int, intended: int, sent: int) -> bytes:
        seq = self.seq[topic]
        self.seq[topic] = seq + 1
        return HEADER.pack(kind, topic, self.pub_id, seq, intended, sent) + self.pad

    async def _send(self, kind: int, first: int, intendeds: npt.NDArray[np.int64],
                    now: int) -> None:
        """Send messages ``first ..`` with the given intended times; message i goes to topic
        ``i % topics``."""
        ntop = len(self.topics)
        n = len(intendeds)
        for i, t in enumerate(self.topic_ids):
            mine = intendeds[(i - first) % ntop :: ntop] if ntop > 1 else intendeds
            if not len(mine):
                continue
            seq = self.seq[t]
            self.seq[t] = seq + len(mine)
            if len(mine) >= PACK_VECTOR_MIN:
                block = pack_block(kind, t, self.pub_id, seq, mine, now, self.size)
                await self.publisher.publish_block(self.topics[i], block, len(mine), self.size)
            else:
                pack, pub, pad = HEADER.pack, self.pub_id, self.pad
                await self.publisher.publish(self.topics[i], [
                    pack(kind, t, pub, seq + k, x, now) + pad
                    for k, x in enumerate(mine.tolist())
                ])
            if kind == _MEASURE:
                self.measured[t] += len(mine)
        self.published_total += n

    async def run(self, start_ns: int, measure_start_ns: int, measure_end_ns: int) -> None:
        """Publish from ``start_ns`` until ``measure_end_ns``; see the module docstring."""
        if self.rate is None:
            delay = (start_ns - time.monotonic_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            await self._closed_loop(measure_start_ns, measure_end_ns)
        else:
            pacer = self._pacer if self._pacer is not None else acquire_pacer()
            try:
                await self._open_loop(
                    pacer, Schedule(start_ns, self.rate), measure_start_ns, measure_end_ns
                )
            finally:
                if self._pacer is None:
                    release_pacer(pacer)

    async def _closed_loop(self, measure_start_ns: int, measure_end_ns: int) -> None:
        batch = self.batch
        i = 0
        while True:
            now = time.monotonic_ns()
            if now >= measure_end_ns:
                return
            kind = _WARMUP if now < measure_start_ns else _MEASURE
            # Closed loop: nothing is scheduled, so "intended" is the send time itself.
            await self._send(kind, i, np.full(batch, now, np.int64), now)
            i += batch
            await asyncio.sleep(0)

    async def _open_loop(self, pacer: Pacer, sched: Schedule, measure_start_ns: int,
                         measure_end_ns: int) -> None:
        total = sched.count_before(measure_end_ns)
        first_measured = sched.count_before(measure_start_ns)
        batch = self.batch
        delay = self._delay
        i = 0
        yielded = True
        while i < total:
            now = pacer.now_ns()
            due = min(sched.due_count(now), total)
            if due <= i:
                await pacer.wait_until(sched.intended_ns(i))
                yielded = True
                continue
            if not yielded:
                # Behind the schedule: let the loop's other work (receivers, reports) run
                # between batches, then send all that is due by then. On schedule the wait
                # above yields instead.
                await asyncio.sleep(0)
                yielded = True
                continue
            end = min(due, i + batch)
            if i < first_measured:
                end = min(end, first_measured)
            kind = _WARMUP if i < first_measured else _MEASURE
            intendeds = sched.intended_block(i, end)
            await self._send(kind, i, intendeds, now)
            if kind == _MEASURE:
                delay.frombytes((now - intendeds).tobytes())
            i = end
            yielded = False

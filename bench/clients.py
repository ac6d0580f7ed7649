"""The driver's side of publishers and subscribers inside a worker.

:class:`SubscriberSink` receives payloads from a target and does the per
message accounting; :class:`PublisherRunner` stamps envelopes and follows the
open-loop schedule (or sends flat out in closed loop). Both keep their hot
loops free of histogram calls: latencies go into ``array('q')`` buffers that
:mod:`msgbench.stats` bins in bulk.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from msgbench.accounting import SequenceTracker
from msgbench.batch import VECTOR_MIN, headers, in_order
from msgbench.config import RunConfig
from msgbench.envelope import HEADER, HEADER_SIZE, Kind, pack_block, padding
from msgbench.schedule import Schedule
from msgbench.target import Publisher, Sink

MIN_SLEEP_S = 0.001
"""Shortest wait between open-loop sends: the event loop's timers have millisecond
resolution, and a shorter sleep turns into a busy loop that would bill its CPU to the
design under test. Messages due meanwhile leave together, stamped with their intended
times, so the wait shows in latency and in the publish delay rather than hiding."""

PACK_VECTOR_MIN = 16
"""From this many messages to one topic on, a batch is encoded with numpy in one go (a fixed
cost of some microseconds, against about 0.3 us a message packed one by one)."""

_PROBE = int(Kind.PROBE)
_WARMUP = int(Kind.WARMUP)
_MEASURE = int(Kind.MEASURE)


class Buffers:
    """Latency values waiting to be binned, shared by every client of a worker."""

    def __init__(self) -> None:
        self.latency: array[int] = array("q")
        self.latency_raw: array[int] = array("q")
        self.publish_delay: array[int] = array("q")


class SubscriberSink(Sink):
    """Accounts every payload one subscriber receives."""

    def __init__(
        self,
        sub_id: int,
        topic: int,
        buffers: Buffers,
        delay_s: float,
        record_raw: bool = True,
        inject_cost_ns: int = 0,
    ) -> None:
        self.sub_id = sub_id
        self.topic = topic
        self.tracker = SequenceTracker()
        self.delivered = 0
        self.received = 0
        """Every payload received, of any kind: what tells the drain the channel is alive."""
        self.delivered_in_window = 0
        self.misrouted = 0
        self.heard: set[int] = set()
        self.events: list[str] = []
        self.disconnect_reason: str | None = None
        self._noted: set[str] = set()
        self.away = False
        """True while the driver has closed this subscription on purpose (churn)."""
        self.measure_end_ns = 1 << 62
        self._delay_s = delay_s
        self._lat = buffers.latency.append
        self._raw = buffers.latency_raw.append
        self._lat_bytes = buffers.latency.frombytes
        self._raw_bytes = buffers.latency_raw.frombytes
        # In closed loop the intended time is the send time, so the uncorrected latency
        # would be a second copy of the same numbers: skip it and halve the recording cost.
        self._record_raw = record_raw
        self._inject_cost_ns = inject_cost_ns

    def deliver(self, payloads: Sequence[bytes], offset: int = 0) -> None:
        """Classify each payload and buffer its latency (see :class:`Sink`)."""
        now = time.monotonic_ns()
        n = len(payloads)
        if n >= VECTOR_MIN and not self.tracker.churn_pending:
            stride = len(payloads[0])
            # Joined, items of one length sit at fixed offsets (a C-level count: ~20 ns each).
            if (stride >= offset + HEADER_SIZE and list(map(len, payloads)).count(stride) == n
                    and self._in_order(now, b"".join(payloads), 0, n, stride, offset)):
                return
        self._each(now, [p[offset:] for p in payloads] if offset else payloads)

    def deliver_block(self, block: bytes, first: int, count: int, stride: int,
                      offset: int = 0, size: int | None = None) -> None:
        """Account ``count`` payloads lying side by side in ``block`` (see :class:`Sink`)."""
        now = time.monotonic_ns()
        payload = stride - offset if size is None else size
        if (count >= VECTOR_MIN and not self.tracker.churn_pending
                and payload >= HEADER_SIZE and stride >= offset + HEADER_SIZE
                and len(block) - first >= count * stride  # the last item may lack its tail
                and self._in_order(now, block, first, count, stride, offset)):
            return
        start = first + offset
        cut = min(payload, HEADER_SIZE)  # a payload too short for a header fails as in deliver
        self._each(now, [block[p : p + cut] for p in range(start, start + count * stride, stride)])

    def _in_order(self, now: int, block: bytes, first: int, count: int, stride: int,
                  offset: int) -> bool:
        """The vectorised path (see :mod:`msgbench.batch`); False when it does not apply."""
        records = headers(block, first, count, stride, offset)
        kind = in_order(records, self.tracker, self.topic)
        if kind is None:
            return False
        delivered = 0
        if kind == _MEASURE:
            delivered = count
            self._lat_bytes((now - records["intended"]).tobytes())
            if self._record_raw:
                self._raw_bytes((now - records["sent"]).tobytes())
        self._done(now, count, delivered)
        return True

    def _each(self, now: int, payloads: Sequence[bytes]) -> None:
        """The per-message path: every case, one payload at a time."""
        unpack = HEADER.unpack_from
        if self.tracker.churn_pending:
            self._settle_churn(payloads)
        nxt = self.tracker.next_seq
        observe = self.tracker.observe
        lat = self._lat
        raw = self._raw
        my_topic = self.topic
        record_raw = self._record_raw
        delivered = 0
        for p in payloads:
            kind, topic, pub, seq, intended, sent = unpack(p)
            key = pub << 16 | topic
            if seq == nxt.get(key):
                nxt[key] = seq + 1
            elif topic != my_topic:
                self.misrouted += 1
                continue
            elif not observe(key, seq):
                continue
            if kind == _MEASURE:
                delivered += 1
                lat(now - intended)
                if record_raw:
                    raw(now - sent)
            elif kind == _PROBE:
                self.heard.add(pub)
        self._done(now, len(payloads), delivered)

    def _done(self, now: int, received: int, delivered: int) -> None:
        self.delivered += delivered
        self.received += received
        if now < self.measure_end_ns:
            self.delivered_in_window += delivered
        if self._inject_cost_ns and delivered:
            _spin_ns(self._inject_cost_ns * delivered)
        if self._delay_s:
            # A slow consumer: block the loop, so the transport backs up as it would
            # behind a subscriber that cannot keep up.
            time.sleep(self._delay_s * received)

    def _settle_churn(self, payloads: Sequence[bytes]) -> None:
        tracker = self.tracker
        for p in payloads:
            _, topic, pub, seq, _, _ = HEADER.unpack_from(p)
            key = pub << 16 | topic
            if key in tracker.churn_pending:
                tracker.settle_churn(key, seq)
                if not tracker.churn_pending:
                    return

    def disconnected(self, reason: str) -> None:
        """Record that the transport dropped this subscriber (see :class:`Sink`)."""
        if self.disconnect_reason is None and not self.away:
            self.disconnect_reason = reason
            self.events.append(f"subscriber {self.sub_id} disconnected: {reason}")

    def note(self, reason: str) -> None:
        """Pass ``reason`` on to the result, once (see :class:`Sink`)."""
        text = f"subscriber {self.sub_id}: {reason}"
        if text not in self._noted:
            self._noted.add(text)
            self.events.append(text)

    def totals(self) -> dict[str, int]:
        """Final counters for the Done message."""
        t = self.tracker
        return {
            "sub": self.sub_id,
            "topic": self.topic,
            "delivered": self.delivered,
            "delivered_in_window": self.delivered_in_window,
            "duplicated": t.duplicated,
            "reordered": t.reordered,
            "gaps": t.lost_gaps,
            "misrouted": self.misrouted,
            "lost_during_churn": t.churn_lost,
            "disconnected": int(self.disconnect_reason is not None),
        }


def _spin_ns(ns: int) -> None:
    """Burn ``ns`` of CPU: an artificial per-message cost (see ``MSGBENCH_INJECT_COST_NS``)."""
    end = time.perf_counter_ns() + ns
    while time.perf_counter_ns() < end:
        pass


class PublisherRunner:
    """Stamps and sends one publisher's messages; topics take turns message by message."""

    def __init__(
        self, pub_id: int, publisher: Publisher, config: RunConfig, buffers: Buffers
    ) -> None:
        self.pub_id = pub_id
        self.publisher = publisher
        self.topics = config.topic_names()
        self.rate = config.rate
        self.batch = config.effective_batch()
        self.size = config.size
        self.pad = padding(config.size)
        self.seq = [0] * len(self.topics)
        self.measured = [0] * len(self.topics)
        self.published_total = 0
        self._delay = buffers.publish_delay

    async def probe(self) -> None:
        """Send one PROBE message on every topic."""
        now = time.monotonic_ns()
        for t, name in enumerate(self.topics):
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
        for t in range(ntop):
            mine = intendeds[(t - first) % ntop :: ntop] if ntop > 1 else intendeds
            if not len(mine):
                continue
            seq = self.seq[t]
            self.seq[t] = seq + len(mine)
            if len(mine) >= PACK_VECTOR_MIN:
                block = pack_block(kind, t, self.pub_id, seq, mine, now, self.size)
                await self.publisher.publish_block(self.topics[t], block, len(mine), self.size)
            else:
                pack, pub, pad = HEADER.pack, self.pub_id, self.pad
                await self.publisher.publish(self.topics[t], [
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
            await self._open_loop(Schedule(start_ns, self.rate), measure_start_ns, measure_end_ns)

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

    async def _open_loop(self, sched: Schedule, measure_start_ns: int, measure_end_ns: int) -> None:
        total = sched.count_before(measure_end_ns)
        first_measured = sched.count_before(measure_start_ns)
        batch = self.batch
        delay = self._delay
        i = 0
        while i < total:
            now = time.monotonic_ns()
            due = min(sched.due_count(now), total)
            if due <= i:
                await asyncio.sleep(max(MIN_SLEEP_S, (sched.intended_ns(i) - now) / 1e9))
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
            await asyncio.sleep(0)

"""The driver's side of a shared group's member and of a responder.

:class:`GroupSink` is one competing consumer: it does each task's work (its
``--work`` service time, one task after another), then records the task as done
(a skipped number is another member's, see :mod:`msgbench.accounting.ranges`),
its completion latency from the intended submit time, how busy it was, how many
it held at once, and how often the design said it delivered again. A task is
booked done only when its work is: a member killed mid-task leaves it undone,
for the design to deliver again or to lose. :class:`Answerer` is what a
responder answers with: the request's header flagged as a reply, stamped with
the responder's id and its receive and reply times.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import numpy as np

from msgbench.accounting.counters import Counters
from msgbench.accounting.ranges import ReceivedSet
from msgbench.api.target import Service, Sink
from msgbench.run.sink import Buffers
from msgbench.workload.envelope import HEADER, HEADER_SIZE, Kind, ReplyStamp, make_reply
from msgbench.workload.work import Work

_PROBE = int(Kind.PROBE)
_MEASURE = int(Kind.MEASURE)


class GroupSink(Sink):
    """Accounts what one member of a shared group receives (see the module docstring)."""

    def __init__(self, sub_id: int, topic: int, group: str, buffers: Buffers,
                 record_raw: bool = True, work: Work | None = None,
                 slowdown: float = 1.0) -> None:
        self.sub_id = sub_id
        self.topic = topic
        self.group = group
        self.received_set = ReceivedSet()
        self.delivered = 0
        """MEASURE messages new to this member (the group's union decides the rest)."""
        self.received = 0
        self.delivered_in_window = 0
        self.misrouted = 0
        self.redelivered = 0
        self.heard: set[int] = set()
        self.events: list[str] = []
        self.disconnect_reason: str | None = None
        self.away = False
        self.measure_end_ns = 1 << 62
        self._noted: set[str] = set()
        self._buffers = buffers
        self._record_raw = record_raw
        self._work = work or Work()
        self._slowdown = slowdown
        self._rng = np.random.default_rng(sub_id)
        self.busy_ns = 0
        """Time spent on tasks (their work) inside the measured window."""
        self.measure_start_ns = 0
        self.in_hand = 0
        """Tasks received and not yet done: what a kill now would orphan."""
        self.held_max = 0
        self.first_redelivery_ns = 0

    def deliver(self, payloads: Sequence[bytes], offset: int = 0) -> None:
        """Account ``payloads`` as done at once, whatever ``--work`` says (see :class:`Sink`);
        shared groups use :meth:`handle`."""
        self.received += len(payloads)
        self._account([p[offset:] for p in payloads] if offset else payloads,
                      time.monotonic_ns())

    async def handle(self, payloads: Sequence[bytes], redelivered: bool = False) -> None:
        """Do the work of ``payloads``, one task after another, then book them done."""
        start = time.monotonic_ns()
        n = len(payloads)
        self.received += n
        if redelivered:
            self.redelivered += n
            if not self.first_redelivery_ns:
                self.first_redelivery_ns = start
        self.in_hand += n
        self.held_max = max(self.held_max, self.in_hand)
        try:
            work_ns = int(self._work.sample_ns(n, self._rng, self._slowdown).sum())
            if work_ns:
                await asyncio.sleep(work_ns / 1e9)
            done = time.monotonic_ns()
            self.busy_ns += max(0, min(done, self.measure_end_ns)
                                - max(start, self.measure_start_ns))
            self._account(payloads, done)
        finally:
            self.in_hand -= n

    def _account(self, payloads: Sequence[bytes], now: int) -> None:
        unpack = HEADER.unpack_from
        by_stream: dict[int, list[int]] = {}
        lat = self._buffers.latency.append
        raw = self._buffers.latency_raw.append
        for p in payloads:
            if len(p) < HEADER_SIZE:
                continue
            kind, topic, pub, seq, intended, sent = unpack(p)
            if topic != self.topic:
                self.misrouted += 1
                continue
            if kind == _MEASURE:
                by_stream.setdefault(pub << 16 | topic, []).append(seq)
                lat(now - intended)
                if self._record_raw:
                    raw(now - sent)
            elif kind == _PROBE:
                self.heard.add(pub)
        new = 0
        for key, seqs in by_stream.items():
            new += self.received_set.add(key, np.array(seqs, np.int64))
        self.delivered += new
        if now < self.measure_end_ns:
            self.delivered_in_window += new

    def disconnected(self, reason: str) -> None:
        """Record that the transport dropped this member (see :class:`Sink`)."""
        if self.disconnect_reason is None and not self.away:
            self.disconnect_reason = reason
            self.events.append(f"subscriber {self.sub_id} ({self.group}) disconnected: {reason}")

    def note(self, reason: str) -> None:
        """Pass ``reason`` on to the result, once (see :class:`Sink`)."""
        text = f"subscriber {self.sub_id} ({self.group}): {reason}"
        if text not in self._noted:
            self._noted.add(text)
            self.events.append(text)

    def counters(self) -> Counters:
        """What this member counted so far (delivered: new to this member)."""
        return Counters(
            delivered=self.delivered,
            received=self.received,
            delivered_in_window=self.delivered_in_window,
            misrouted=self.misrouted,
            redelivered=self.redelivered,
            orphaned=self.in_hand,
            disconnected_subscribers=int(self.disconnect_reason is not None),
        )

    def totals(self) -> dict[str, int | str]:
        """Final counters for the Done message: id, topic, group, MEASURE deliveries repeats
        included (``measured``: the group's duplicates are these minus its union) and
        :meth:`counters`."""
        return {"sub": self.sub_id, "topic": self.topic, "group": self.group,
                "measured": self.received_set.received, "busy_ns": self.busy_ns,
                "held_max": self.held_max, "first_redelivery_ns": self.first_redelivery_ns,
                **self.counters().to_json()}


class Answerer(Service):
    """A responder's service: each request answered at once with a stamped reply."""

    def __init__(self, resp_id: int) -> None:
        self.resp_id = resp_id
        self.answered = 0

    async def answer(self, requests: Sequence[bytes]) -> list[bytes]:
        """Replies to ``requests`` (see :class:`Service`)."""
        now = time.monotonic_ns()
        stamp = ReplyStamp(self.resp_id, now, time.monotonic_ns())
        self.answered += len(requests)
        return [make_reply(r, stamp) for r in requests]

    def totals(self) -> dict[str, int | str]:
        """Final counts for the Done message."""
        return {"sub": self.resp_id, "role": "responder", "answered": self.answered}

"""The driver's side of a shared group's member and of a responder.

:class:`GroupSink` is one competing consumer: it records the sequence numbers it
received (a skipped number is another member's, see
:mod:`msgbench.accounting.ranges`), the latency from the intended submit time,
and how often the design said it delivered again. :class:`Answerer` is what a
responder answers with: the request's header flagged as a reply, stamped with
the responder's id and its receive and reply times.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from msgbench.accounting.counters import Counters
from msgbench.accounting.ranges import ReceivedSet
from msgbench.api.target import Service, Sink
from msgbench.run.sink import Buffers
from msgbench.workload.envelope import HEADER, HEADER_SIZE, Kind, ReplyStamp, make_reply

_PROBE = int(Kind.PROBE)
_MEASURE = int(Kind.MEASURE)


class GroupSink(Sink):
    """Accounts what one member of a shared group receives (see the module docstring)."""

    def __init__(self, sub_id: int, topic: int, group: str, buffers: Buffers,
                 record_raw: bool = True) -> None:
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

    def deliver(self, payloads: Sequence[bytes], offset: int = 0) -> None:
        """Account ``payloads`` (see :class:`Sink`); shared groups normally use :meth:`handle`."""
        self._account([p[offset:] for p in payloads] if offset else payloads, False)

    async def handle(self, payloads: Sequence[bytes], redelivered: bool = False) -> None:
        """Account ``payloads``; the work they stand for is done when this returns."""
        self._account(payloads, redelivered)

    def _account(self, payloads: Sequence[bytes], redelivered: bool) -> None:
        now = time.monotonic_ns()
        self.received += len(payloads)
        if redelivered:
            self.redelivered += len(payloads)
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
            disconnected_subscribers=int(self.disconnect_reason is not None),
        )

    def totals(self) -> dict[str, int | str]:
        """Final counters for the Done message: id, topic, group, MEASURE deliveries repeats
        included (``measured``: the group's duplicates are these minus its union) and
        :meth:`counters`."""
        return {"sub": self.sub_id, "topic": self.topic, "group": self.group,
                "measured": self.received_set.received, **self.counters().to_json()}


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

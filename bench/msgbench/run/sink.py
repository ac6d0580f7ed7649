"""The driver's side of a subscriber inside a worker.

:class:`SubscriberSink` receives payloads from a target and does the per-message
accounting. Its hot loops stay free of histogram calls: latencies go into
``array('q')`` buffers (:class:`Buffers`) that :mod:`msgbench.accounting.histogram`
bins in bulk.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Sequence

from msgbench.accounting.batch import VECTOR_MIN, headers, in_order
from msgbench.accounting.counters import Counters
from msgbench.accounting.sequence import SequenceTracker
from msgbench.api.target import Sink
from msgbench.run import inject
from msgbench.workload.envelope import HEADER, HEADER_SIZE, Kind

_PROBE = int(Kind.PROBE)
_MEASURE = int(Kind.MEASURE)


class Buffers:
    """Latency values waiting to be binned, shared by every client of a worker."""

    def __init__(self) -> None:
        self.latency: array[int] = array("q")
        self.latency_raw: array[int] = array("q")
        self.publish_delay: array[int] = array("q")
        self.extra: dict[str, array[int]] = {}
        """Further named histograms (request/reply legs ...), created by who records them."""

    def named(self, name: str) -> array[int]:
        """The buffer of histogram ``name`` (see :attr:`extra`)."""
        buf = self.extra.get(name)
        if buf is None:
            buf = self.extra[name] = array("q")
        return buf


class SubscriberSink(Sink):
    """Accounts every payload one subscriber receives: a fan-out subscriber of ``topic``,
    or (with ``publisher``) a requester receiving the replies to its own requests, which
    form one stream ``(publisher, topic)``: anything else is misrouted."""

    def __init__(
        self,
        sub_id: int,
        topic: int,
        buffers: Buffers,
        delay_s: float,
        record_raw: bool = True,
        inject_cost_ns: int = 0,
        publisher: int | None = None,
    ) -> None:
        self.sub_id = sub_id
        self.topic = topic
        self.publisher = publisher
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
        # MSGBENCH_INJECT_WORK / _COST_NS: a fixed amount of work per delivery (run/inject.py);
        # ``inject_cost_ns`` is read from the same environment by the worker and kept for it
        self._burn = inject.burn if inject_cost_ns or inject.enabled() else None

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
        """The vectorised path (see :mod:`msgbench.accounting.batch`); False if it does not
        apply."""
        records = headers(block, first, count, stride, offset)
        kind = in_order(records, self.tracker, self.topic, self.publisher)
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
        only = self.publisher
        record_raw = self._record_raw
        delivered = 0
        for p in payloads:
            kind, topic, pub, seq, intended, sent = unpack(p)
            key = pub << 16 | topic
            if seq == nxt.get(key):
                nxt[key] = seq + 1
            elif topic != my_topic or (only is not None and pub != only):
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
        if self._burn is not None and delivered:
            self._burn(delivered)
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

    def counters(self) -> Counters:
        """What this subscriber counted so far."""
        t = self.tracker
        return Counters(
            delivered=self.delivered,
            received=self.received,
            delivered_in_window=self.delivered_in_window,
            gaps=t.lost_gaps,
            duplicated=t.duplicated,
            reordered=t.reordered,
            misrouted=self.misrouted,
            lost_during_churn=t.churn_lost,
            disconnected_subscribers=int(self.disconnect_reason is not None),
        )

    def totals(self) -> dict[str, int | str]:
        """Final counters for the Done message: id, topic and :meth:`counters`."""
        return {"sub": self.sub_id, "topic": self.topic, **self.counters().to_json()}


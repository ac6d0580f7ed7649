"""The driver's side of a requester's replies: matched, late, orphan, and the legs.

A requester's replies form one stream (its id, its topic); :class:`ReplySink`
hands each to the fan-out accounting of :class:`~msgbench.run.sink.SubscriberSink`
(duplicates, misrouted replies) after looking at what only a reply carries:

* a reply to a sequence number this requester never sent is an **orphan**
  (counted, not delivered); what is no reply at all (too short, not flagged) is an
  **error** (counted, not delivered);
* a reply later than ``--timeout`` after its request left is **late** (still
  matched: a timed-out request is owed no reply, but one came);
* the **legs** on the host's one clock, from the stamp the responder adds:
  request leg (sent -> the responder got it), service (the responder's time),
  reply leg (answered -> back here).

Requests that never got a reply in time are the run's ``timeouts``:
``expected - (delivered - late)``.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Callable, Sequence

from msgbench.accounting.counters import Counters
from msgbench.results.records import RPC_LEGS
from msgbench.run.sink import Buffers, SubscriberSink
from msgbench.workload.envelope import HEADER, REPLY_EXT, REPLY_FLAG, REPLY_SIZE, Kind

_MEASURE = int(Kind.MEASURE)


class ReplySink(SubscriberSink):
    """Replies of requester ``req_id`` (see the module docstring)."""

    def __init__(self, req_id: int, topic: int, buffers: Buffers, record_raw: bool,
                 timeout_ns: int, sent: Callable[[], int]) -> None:
        super().__init__(req_id, topic, buffers, 0.0, record_raw=record_raw, publisher=req_id)
        self.timeout_ns = timeout_ns
        self._sent = sent
        self.late = 0
        self.orphans = 0
        self.errors = 0
        self.replies = 0
        """Replies received, of any kind: the requester's in-flight count is sent - this."""
        self.answered = asyncio.Event()
        self._legs: tuple[array[int], ...] = tuple(buffers.named(n) for n in RPC_LEGS)

    def deliver(self, payloads: Sequence[bytes], offset: int = 0) -> None:
        """Classify replies, then account them as a fan-out stream (see :class:`Sink`)."""
        now = time.monotonic_ns()
        items = [p[offset:] for p in payloads] if offset else list(payloads)
        unpack, ext = HEADER.unpack_from, REPLY_EXT.unpack_from
        sent_so_far = self._sent()
        keep = []
        req, svc, rep = (leg.append for leg in self._legs)
        for p in items:
            if len(p) < REPLY_SIZE or not p[1] & REPLY_FLAG:
                self.errors += 1  # no reply at all: neither matched nor owed anything
                continue
            kind, _, pub, seq, _, sent = unpack(p)
            if pub == self.sub_id and seq >= sent_so_far:
                self.orphans += 1
                continue
            if kind == _MEASURE:
                _, got, answered = ext(p, HEADER.size)
                req(got - sent)
                svc(answered - got)
                rep(now - answered)
                if now - sent > self.timeout_ns:
                    self.late += 1
            keep.append(p)
        self.replies += len(items)
        self.answered.set()
        if keep:
            super().deliver(keep)

    def deliver_block(self, block: bytes, first: int, count: int, stride: int,
                      offset: int = 0, size: int | None = None) -> None:
        """Replies side by side in ``block``: cut out and classified one by one."""
        n = stride - offset if size is None else size
        start = first + offset
        self.deliver([block[p : p + n] for p in range(start, start + count * stride, stride)])

    def counters(self) -> Counters:
        """Fan-out counters plus the late and orphan replies."""
        c = super().counters()
        return Counters(**{**c.to_json(), "late": self.late, "orphan_replies": self.orphans,
                           "errors": self.errors})

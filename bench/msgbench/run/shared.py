"""The driver's side of one member of a shared group (competing consumers).

:class:`GroupSink` is one competing consumer. It does each task's ``--work`` (its service
time, one task after another, waited out on the loop's pacer: see
:mod:`msgbench.run.worktimer`) and books each task done when its own work ends (a skipped
number is another member's, see :mod:`msgbench.accounting.ranges`), with three latencies
from the submit time the schedule intended: **queue wait** (submitted -> this member got
it, and its uncorrected twin from the actual send), **service** (the member's time on it)
and **completion** (submitted -> done: the run's ``latency``). It also keeps how busy the
member was, how many tasks it held at once, how often the design said it delivered again,
and, per report interval, how long it sat with nothing in hand and the fewest tasks it held
waiting behind the one it worked on (what :mod:`msgbench.results.aggregate` turns into
seconds idle while tasks waited elsewhere). A task is booked done only when its work is: a
member killed mid-task leaves it undone, for the design to deliver again or to lose.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from msgbench.accounting.batch import VECTOR_MIN, headers
from msgbench.accounting.counters import Counters
from msgbench.accounting.ranges import ReceivedSet
from msgbench.api.target import Sink
from msgbench.results.records import QUEUE_WAIT, QUEUE_WAIT_UNCORRECTED, SERVICE
from msgbench.run.sink import Buffers
from msgbench.run.worktimer import WorkTimer
from msgbench.workload.envelope import (
    HEADER,
    HEADER_SIZE,
    KIND_MASK,
    PUB_SHIFT,
    TOPIC_MASK,
    TOPIC_SHIFT,
    Kind,
)
from msgbench.workload.work import Work

_PROBE = int(Kind.PROBE)
_MEASURE = int(Kind.MEASURE)
_MEASURE_BYTE = bytes([_MEASURE])
"""A payload's first byte is its kind (the header is little-endian)."""


def _records(payloads: Sequence[bytes]) -> npt.NDArray[np.void] | None:
    """The headers of ``payloads`` as one numpy record array, joined once for both the
    queue-wait and the done accounting, when there are enough of one length to be worth it
    (see :mod:`msgbench.accounting.batch`); else None (the per-message path)."""
    n = len(payloads)
    if n < VECTOR_MIN or list(map(len, payloads)).count(len(payloads[0])) != n:
        return None
    return headers(b"".join(payloads), 0, n, len(payloads[0]), 0)


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
        self.measure_start_ns = 0
        self.measure_end_ns = 1 << 62
        self._noted: set[str] = set()
        self._buffers = buffers
        self._record_raw = record_raw
        self._work = work or Work()
        self._slowdown = slowdown
        self._rng = np.random.default_rng(sub_id)
        self._timer = WorkTimer()
        self._wait = buffers.named(QUEUE_WAIT)
        self._wait_raw = buffers.named(QUEUE_WAIT_UNCORRECTED)
        self._service = buffers.named(SERVICE)
        self.busy_ns = 0
        """Time spent on tasks (their work) inside the measured window."""
        self.in_hand = 0
        """Tasks received and not yet done: what a kill now would orphan."""
        self.held_max = 0
        self.first_redelivery_ns = 0
        self._idle_since: int | None = time.monotonic_ns()
        """Since when this member has held nothing (None while it holds tasks)."""
        self._idle_ns = 0
        """Idle time inside the measured window, since the last :meth:`interval`."""
        self._fewest_waiting = 0
        """The fewest tasks held behind the one in work, since the last :meth:`interval`."""
        self._taken = 0
        """MEASURE tasks this member received since the last :meth:`interval`."""

    def deliver(self, payloads: Sequence[bytes], offset: int = 0) -> None:
        """Account ``payloads`` as done at once, whatever ``--work`` says (see :class:`Sink`);
        shared groups use :meth:`handle`."""
        now = time.monotonic_ns()
        items = [p[offset:] for p in payloads] if offset else payloads
        self.received += len(items)
        rec = _records(items)
        self._received(items, now, rec)
        self._account(items, now, rec)

    async def handle(self, payloads: Sequence[bytes], redelivered: bool = False) -> None:
        """Do the work of ``payloads``, one task after another, booking each done as its own
        work ends (see :class:`Sink`)."""
        start = time.monotonic_ns()
        n = len(payloads)
        self.received += n
        if redelivered:
            self.redelivered += n
            if not self.first_redelivery_ns:
                self.first_redelivery_ns = start
        self._take(n, start)
        try:
            rec = _records(payloads)
            self._received(payloads, start, rec)
            work = self._work.sample_ns(n, self._rng, self._slowdown)
            if not work.any():
                self._account(payloads, start, rec)
                self._given_back(n, start)
                n = 0  # given back: the finally below must not give them back again
                return
            t = start
            for i, w in enumerate(work.tolist()):
                self._fewest_waiting = min(self._fewest_waiting, self.in_hand - 1)
                if w:
                    await self._timer.until(t + w)
                done = time.monotonic_ns()
                if payloads[i][:1] == _MEASURE_BYTE:
                    self._service.append(done - t)
                self.busy_ns += max(0, min(done, self.measure_end_ns)
                                    - max(t, self.measure_start_ns))
                self._account(payloads[i : i + 1], done)
                self._given_back(1, done)
                n -= 1
                t = done
        finally:
            if n:  # cancelled mid-batch (the run is closing): the rest stays undone
                self._given_back(n, time.monotonic_ns())

    def _take(self, n: int, now: int) -> None:
        if self._idle_since is not None:
            self._idle_ns += self._in_window(self._idle_since, now)
            self._idle_since = None
        self.in_hand += n
        self.held_max = max(self.held_max, self.in_hand)

    def _given_back(self, n: int, now: int) -> None:
        self.in_hand -= n
        if not self.in_hand:
            self._idle_since = now

    def _in_window(self, start: int, end: int) -> int:
        return max(0, min(end, self.measure_end_ns) - max(start, self.measure_start_ns))

    def interval(self, now: int) -> tuple[int, int, int, int]:
        """This member's idle nanoseconds (inside the measured window), the fewest tasks it
        held waiting behind the one in work, and the MEASURE tasks it received, since the
        previous call, and the tasks it holds waiting now; then starts anew."""
        if self._idle_since is not None:
            self._idle_ns += self._in_window(self._idle_since, now)
            self._idle_since = now
        out = (self._idle_ns, self._fewest_waiting, self._taken, max(0, self.in_hand - 1))
        self._idle_ns = 0
        self._taken = 0
        self._fewest_waiting = max(0, self.in_hand - 1)
        return out

    def _received(self, payloads: Sequence[bytes], now: int,
                  rec: npt.NDArray[np.void] | None) -> None:
        """Queue wait of each MEASURE task: from its intended (and actual) submit time
        (``rec``: the payloads' headers from :func:`_records`, when they are a block)."""
        if rec is not None:
            mine = (rec["head"] & KIND_MASK) == _MEASURE
            self._taken += int(np.count_nonzero(mine))
            self._wait.frombytes((now - rec["intended"][mine]).tobytes())
            if self._record_raw:
                self._wait_raw.frombytes((now - rec["sent"][mine]).tobytes())
            return
        unpack = HEADER.unpack_from
        for p in payloads:
            if len(p) >= HEADER_SIZE:
                kind, _, _, _, intended, sent = unpack(p)
                if kind == _MEASURE:
                    self._taken += 1
                    self._wait.append(now - intended)
                    if self._record_raw:
                        self._wait_raw.append(now - sent)

    def _account(self, payloads: Sequence[bytes], now: int,
                 rec: npt.NDArray[np.void] | None = None) -> None:
        if rec is not None:
            self._account_block(rec, now)
            return
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
        self._book(((k, np.array(s, np.int64)) for k, s in by_stream.items()), now)

    def _account_block(self, rec: npt.NDArray[np.void], now: int) -> None:
        """:meth:`_account` for equal-length tasks at once, with numpy (``rec``: headers)."""
        n = len(rec)
        head = rec["head"]
        kind = head & KIND_MASK
        topic = (head >> TOPIC_SHIFT) & TOPIC_MASK
        ours = topic == self.topic
        self.misrouted += int(n - np.count_nonzero(ours))
        for pub in np.unique(head[ours & (kind == _PROBE)] >> PUB_SHIFT).tolist():
            self.heard.add(int(pub))
        measured = ours & (kind == _MEASURE)
        self._buffers.latency.frombytes((now - rec["intended"][measured]).tobytes())
        if self._record_raw:
            self._buffers.latency_raw.frombytes((now - rec["sent"][measured]).tobytes())
        pubs = (head[measured] >> PUB_SHIFT).astype(np.int64)
        seqs = rec["seq"][measured]
        keys = pubs << 16 | self.topic
        self._book(((int(k), seqs[keys == k]) for k in np.unique(keys).tolist()), now)

    def _book(self, streams: Iterable[tuple[int, npt.NDArray[np.int64]]], now: int) -> None:
        new = 0
        for key, seqs in streams:
            new += self.received_set.add(key, seqs)
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

    def close(self) -> None:
        """Give back the work timer's pacer."""
        self._timer.close()

"""Per-subscriber delivery accounting: sequence tracking per publisher stream.

Each publisher numbers its messages per topic. A subscriber remembers, per
(publisher, topic) stream, the next sequence number it expects:

* the expected number: in order;
* a higher number: the skipped ones are missing (a gap);
* a lower number that is missing: it arrived late (reordered) and is no
  longer missing;
* a lower number that is not missing: a duplicate.

Losses are finally computed exactly as expected minus unique deliveries;
gaps give the live "lost so far" figure. The first message of a stream sets
its baseline, because a subscriber cannot know what was sent before it joined.
"""

from __future__ import annotations

import bisect

MAX_GAP_RANGES = 10_000
"""Missing ranges remembered per stream; older ones are forgotten (late arrivals then count as
duplicates). Bounds memory when a target drops heavily."""


class StreamGaps:
    """Sorted, disjoint ``[lo, hi)`` ranges of missing sequence numbers of one stream."""

    __slots__ = ("forgotten", "ranges")

    def __init__(self) -> None:
        self.ranges: list[tuple[int, int]] = []
        self.forgotten = 0

    def add(self, lo: int, hi: int) -> None:
        """Mark ``lo`` .. ``hi - 1`` as missing; ranges arrive in increasing order."""
        self.ranges.append((lo, hi))
        if len(self.ranges) > MAX_GAP_RANGES:
            self.ranges.pop(0)
            self.forgotten += 1

    def fill(self, seq: int) -> bool:
        """If ``seq`` is missing, mark it received and return True."""
        i = bisect.bisect_right(self.ranges, (seq, float("inf"))) - 1
        if i < 0:
            return False
        lo, hi = self.ranges[i]
        if not lo <= seq < hi:
            return False
        parts = [(a, b) for a, b in ((lo, seq), (seq + 1, hi)) if a < b]
        self.ranges[i : i + 1] = parts
        return True


class SequenceTracker:
    """Classifies out-of-order arrivals for one subscriber.

    The in-order case is handled inline by the caller's hot loop (see
    ``msgbench.run.worker``); this class holds the state and the slow path.
    """

    __slots__ = ("churn_lost", "churn_pending", "duplicated", "gaps", "lost_gaps", "next_seq",
                 "reordered")

    def __init__(self) -> None:
        self.next_seq: dict[int, int] = {}
        """Next expected sequence per stream key ``publisher << 16 | topic``."""
        self.gaps: dict[int, StreamGaps] = {}
        self.lost_gaps = 0
        self.duplicated = 0
        self.reordered = 0
        self.churn_pending: set[int] = set()
        """Streams not heard from since the subscriber came back from an absence."""
        self.churn_lost = 0

    def returned(self) -> None:
        """The subscriber is back after an absence: the next gap of each known stream is what
        was published while it was away."""
        self.churn_pending = set(self.next_seq)

    def settle_churn(self, key: int, seq: int) -> None:
        """First message of stream ``key`` after an absence: book its gap as churn loss."""
        self.churn_pending.discard(key)
        expected = self.next_seq.get(key)
        if expected is not None and seq > expected:
            before = self.lost_gaps
            self.unexpected(key, seq, expected)
            self.churn_lost += self.lost_gaps - before
            self.next_seq[key] = seq  # let the caller account ``seq`` itself as in order

    def missing(self, key: int, lo: int, hi: int) -> None:
        """Sequence numbers ``lo`` .. ``hi - 1`` of stream ``key`` were skipped (a gap, in
        increasing order of ``lo`` per stream)."""
        gaps = self.gaps.get(key)
        if gaps is None:
            gaps = self.gaps[key] = StreamGaps()
        gaps.add(lo, hi)
        self.lost_gaps += hi - lo

    def unexpected(self, key: int, seq: int, expected: int) -> bool:
        """Handle ``seq`` != ``expected`` on stream ``key``; return True if it is new.

        A new message (ahead of or filling a gap) counts as a unique delivery;
        a duplicate does not.
        """
        if seq > expected:
            self.missing(key, expected, seq)
            self.next_seq[key] = seq + 1
            return True
        gaps = self.gaps.get(key)
        if gaps is not None and gaps.fill(seq):
            self.reordered += 1
            self.lost_gaps -= 1
            return True
        self.duplicated += 1
        return False

    def observe(self, key: int, seq: int) -> bool:
        """Account one arrival; return True when it is a new (not duplicate) message."""
        expected = self.next_seq.get(key)
        if expected is None or seq == expected:
            self.next_seq[key] = seq + 1
            return True
        return self.unexpected(key, seq, expected)

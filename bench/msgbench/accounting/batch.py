"""Whole-batch accounting with numpy: the common case at a fraction of the per-message cost.

At high rates a subscriber receives hundreds of messages per socket read, and
nearly always they are the plainest case there is: every one a MEASURE (or
WARMUP) message on the subscriber's own topic, each continuing its stream's
sequence, or skipping ahead where the transport dropped some.
:func:`in_order` recognises such a batch with a handful of vectorised
operations over the headers, in place (a structured view of the receive
buffer, no copy), books the skipped numbers as gaps and advances the streams'
expected sequence numbers. Anything else (a duplicate, a late arrival, a
probe, another topic, a mixed batch, a sequence number at or past 2**63) makes
it answer ``None`` without changing anything, and the caller accounts the
batch message by message as before (so do payloads of unequal length, which
the callers in ``msgbench.run.sink`` never read at fixed offsets).
The two paths therefore give the same result; the fast one only skips work
that could not have changed it.

A numpy operation costs a few microseconds however short its input, so
batches below :data:`VECTOR_MIN` messages take the per-message path.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from msgbench.accounting.sequence import SequenceTracker
from msgbench.workload.envelope import KIND_AND_TOPIC as _KIND_AND_TOPIC
from msgbench.workload.envelope import KIND_MASK as _KIND_MASK
from msgbench.workload.envelope import PUB_SHIFT as _PUB_SHIFT
from msgbench.workload.envelope import TOPIC_MASK as _TOPIC_MASK
from msgbench.workload.envelope import TOPIC_SHIFT as _TOPIC_SHIFT
from msgbench.workload.envelope import Kind, header_dtype

VECTOR_MIN = 64
"""Smallest batch worth the fixed cost of the vectorised checks (about 20 us a batch here,
where the per-message path costs about 0.5 us a message)."""
MAX_STREAMS = 64
"""Batches interleaving more streams than this take the per-message path: the check costs a
few operations per stream."""

_ACCEPTED = (int(Kind.MEASURE), int(Kind.WARMUP))


def headers(block: bytes, first: int, count: int, stride: int,
            offset: int) -> npt.NDArray[np.void]:
    """The headers of ``count`` items of ``block`` (see ``Sink.deliver_block``), not copied."""
    return np.frombuffer(block, header_dtype(stride, offset), count, first)


def in_order(records: npt.NDArray[np.void], tracker: SequenceTracker, topic: int,
             publisher: int | None = None) -> int | None:
    """Account ``records`` at once if every stream in them only moves forward.

    That is: all of one kind, MEASURE or WARMUP; all on ``topic``; and per
    stream, sequence numbers strictly rising from at least the next expected
    one (any start for a stream not seen yet: its first message sets the
    baseline, as in ``SequenceTracker.observe``). Skipped numbers are booked
    as gaps, as the per-message path would; every message is then new. On
    success the tracker is updated and the kind returned; otherwise returns
    ``None`` and changes nothing.
    """
    head = records["head"]
    h0 = int(head[0])
    kind = h0 & _KIND_MASK
    if kind not in _ACCEPTED or (h0 >> _TOPIC_SHIFT) & _TOPIC_MASK != topic:
        return None
    seq = records["seq"]
    nxt = tracker.next_seq
    if publisher is not None and h0 >> _PUB_SHIFT != publisher:
        return None
    if (head == h0).all():
        key = h0 >> _TOPIC_SHIFT
        gaps = _rising(seq, nxt.get(key))
        if gaps is None:
            return None
        _apply(tracker, key, seq, gaps)
        return kind
    if publisher is not None or not ((head & _KIND_AND_TOPIC) == (h0 & _KIND_AND_TOPIC)).all():
        return None
    keys = head >> _TOPIC_SHIFT
    streams = np.unique(keys)
    if len(streams) > MAX_STREAMS:
        return None
    found = []
    for k in streams.tolist():
        mine = seq[keys == k]
        gaps = _rising(mine, nxt.get(k))
        if gaps is None:
            return None
        found.append((k, mine, gaps))
    for k, mine, gaps in found:
        _apply(tracker, k, mine, gaps)
    return kind


def _rising(seq: npt.NDArray[np.int64], expected: int | None) -> list[tuple[int, int]] | None:
    """The ``[lo, hi)`` gaps if ``seq`` rises strictly from ``expected`` or later, else None."""
    s0 = int(seq[0])
    if expected is not None and s0 < expected:
        return None
    # Sequence numbers are unsigned 64-bit: one at 2**63 or beyond reads negative here, and
    # differences across the sign could wrap into plausible steps. Leave those to the
    # per-message path (no real run gets there: 2**63 messages).
    if int(seq.min()) < 0:
        return None
    gaps = [] if expected is None or s0 == expected else [(expected, s0)]
    if len(seq) == 1:
        return gaps
    step = np.diff(seq)
    if int(seq[-1]) - s0 == len(seq) - 1:
        # No room for a skip: rising strictly means rising by one, so no gap to look for.
        return gaps if (step == 1).all() else None
    if not (step >= 1).all():
        return None
    for i in np.flatnonzero(step != 1).tolist():
        gaps.append((int(seq[i]) + 1, int(seq[i + 1])))
    return gaps


def _apply(tracker: SequenceTracker, key: int, seq: npt.NDArray[np.int64],
           gaps: list[tuple[int, int]]) -> None:
    for lo, hi in gaps:
        tracker.missing(key, lo, hi)
    tracker.next_seq[key] = int(seq[-1]) + 1

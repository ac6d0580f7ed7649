"""The vectorised accounting path gives exactly what the per-message path gives."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

import pytest

from msgbench.accounting.batch import MAX_STREAMS, VECTOR_MIN, headers, in_order
from msgbench.accounting.sequence import SequenceTracker
from msgbench.api.target import Sink
from msgbench.run.sink import Buffers, SubscriberSink
from msgbench.workload.envelope import HEADER, Kind, header_dtype

SIZE = 64
NOW = 10_000_000_000
MEASURE, WARMUP, PROBE = int(Kind.MEASURE), int(Kind.WARMUP), int(Kind.PROBE)


def _msg(kind: int, topic: int, pub: int, seq: int, size: int = SIZE) -> bytes:
    intended = NOW - 1000 * (seq % 97 + 1)
    return HEADER.pack(kind, topic, pub, seq, intended, intended + 7) + bytes(size - HEADER.size)


def _state(sink: SubscriberSink, buffers: Buffers) -> tuple[object, ...]:
    t = sink.tracker
    return (sink.delivered, sink.received, sink.misrouted, sorted(sink.heard), dict(t.next_seq),
            {k: list(g.ranges) for k, g in t.gaps.items()}, t.lost_gaps, t.duplicated,
            t.reordered, list(buffers.latency), list(buffers.latency_raw))


def _pair() -> tuple[SubscriberSink, Buffers, SubscriberSink, Buffers]:
    fast_buf, slow_buf = Buffers(), Buffers()
    return (SubscriberSink(3, 0, fast_buf, 0.0), fast_buf, SubscriberSink(3, 0, slow_buf, 0.0),
            slow_buf)


@pytest.fixture(autouse=True)
def _frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both paths read the clock once per batch: freeze it so latencies compare exactly."""
    monkeypatch.setattr(time, "monotonic_ns", lambda: NOW)


def _feed_both(batches: Sequence[list[bytes]]) -> tuple[tuple[object, ...], tuple[object, ...]]:
    fast, fast_buf, slow, slow_buf = _pair()
    for b in batches:
        fast.deliver(b)
        slow._each(NOW, b)  # the per-message path alone
    return _state(fast, fast_buf), _state(slow, slow_buf)


def _random_batches(rng: random.Random, streams: int) -> list[list[bytes]]:
    """Mostly clean in-order runs, with gaps, duplicates, reordering, probes, warm-up and
    messages of another topic mixed in at random."""
    seqs = [0] * streams
    sent: list[bytes] = []
    batches: list[list[bytes]] = []
    for _ in range(40):
        batch: list[bytes] = []
        kind = rng.choice([MEASURE, MEASURE, MEASURE, WARMUP])
        for _ in range(rng.choice([1, 10, VECTOR_MIN, 200, 500])):
            pub = rng.randrange(streams)
            roll = rng.random()
            if roll < 0.002 and sent:
                batch.append(rng.choice(sent))  # duplicate or late
                continue
            if roll < 0.03:
                seqs[pub] += rng.randrange(1, 5)  # gap, as where a transport drops
            topic = 1 if roll > 0.998 else 0
            m = _msg(PROBE if roll > 0.9975 else kind, topic, pub, seqs[pub])
            seqs[pub] += 1
            batch.append(m)
            sent.append(m)
        if rng.random() < 0.1 and len(batch) > 3:
            batch[1], batch[2] = batch[2], batch[1]  # reordered inside a batch
        batches.append(batch)
    return batches


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("streams", [1, 4])
def test_random_batches_account_alike(seed: int, streams: int) -> None:
    fast, slow = _feed_both(_random_batches(random.Random(seed), streams))
    assert fast == slow
    assert fast[0] != 0  # something was delivered


def _tracker(next_seq: dict[int, int]) -> SequenceTracker:
    t = SequenceTracker()
    t.next_seq.update(next_seq)
    return t


def test_clean_batch_takes_the_vectorised_path() -> None:
    fast, buf, _, _ = _pair()
    fast.deliver([_msg(MEASURE, 0, 1, s) for s in range(100)])
    assert fast.tracker.next_seq == {1 << 16: 100}
    records = headers(b"".join(_msg(MEASURE, 0, 1, s) for s in range(100, 200)), 0, 100, SIZE, 0)
    assert in_order(records, fast.tracker, 0) == MEASURE
    assert fast.tracker.next_seq == {1 << 16: 200}
    assert list(buf.latency)[:2] == [1000, 2000]  # now - intended
    assert list(buf.latency_raw)[:2] == [993, 1993]  # now - sent


def test_skips_ahead_are_booked_as_gaps() -> None:
    """What a dropping transport (ZeroMQ at its high-water mark) looks like."""
    seqs = [12, 13, 20, *range(21, 21 + VECTOR_MIN), 100]
    t = _tracker({0: 10})
    block = b"".join(_msg(MEASURE, 0, 0, s) for s in seqs)
    assert in_order(headers(block, 0, len(seqs), SIZE, 0), t, 0) == MEASURE
    assert t.gaps[0].ranges == [(10, 12), (14, 20), (21 + VECTOR_MIN, 100)]
    assert t.lost_gaps == 2 + 6 + 100 - 21 - VECTOR_MIN
    assert t.next_seq == {0: 101}


@pytest.mark.parametrize("case", ["duplicate", "late", "topic", "probe", "mixed kinds", "behind"])
def test_anything_unusual_leaves_the_state_alone(case: str) -> None:
    seqs = list(range(10, 10 + VECTOR_MIN))
    kinds = [MEASURE] * VECTOR_MIN
    topics = [0] * VECTOR_MIN
    if case == "duplicate":
        seqs[30] = seqs[29]
    elif case == "late":
        seqs[30], seqs[31] = seqs[31], seqs[30]
    elif case == "topic":
        topics[5] = 2
    elif case == "probe":
        kinds[7] = PROBE
    elif case == "mixed kinds":
        kinds[-1] = WARMUP
    block = b"".join(_msg(k, t, 0, s) for k, t, s in zip(kinds, topics, seqs, strict=True))
    t = _tracker({0: 11 if case == "behind" else 10})
    before = dict(t.next_seq)
    assert in_order(headers(block, 0, VECTOR_MIN, SIZE, 0), t, 0) is None
    assert t.next_seq == before and not t.gaps and t.lost_gaps == 0


def test_interleaved_streams_each_continue() -> None:
    msgs = [_msg(MEASURE, 0, p, s) for s in range(40) for p in range(3)]
    t = _tracker({0 << 16: 0, 1 << 16: 0})  # publisher 2 not seen yet: its first sets the base
    assert in_order(headers(b"".join(msgs), 0, len(msgs), SIZE, 0), t, 0) == MEASURE
    assert t.next_seq == {0: 40, 1 << 16: 40, 2 << 16: 40}


def test_too_many_streams_fall_back() -> None:
    msgs = [_msg(MEASURE, 0, p, 0) for p in range(MAX_STREAMS + 1)]
    assert in_order(headers(b"".join(msgs), 0, len(msgs), SIZE, 0), _tracker({}), 0) is None


def test_deliver_block_reads_items_with_a_frame_around_the_payload() -> None:
    """A transport's framing before and after each payload, as in a RESP or ZeroMQ buffer."""
    lead, tail = b"$64\r\n", b"\r\n"
    msgs = [_msg(MEASURE, 0, 0, s) for s in range(VECTOR_MIN + 5)] + [_msg(PROBE, 0, 0, 999)]
    block = b"junk" + b"".join(lead + m + tail for m in msgs)
    stride = len(lead) + SIZE + len(tail)
    for count in (len(msgs) - 1, len(msgs)):  # vectorised, then the fall-back for the probe
        sink, buf, _, _ = _pair()
        sink.deliver_block(block, 4, count, stride, len(lead), SIZE)
        assert sink.delivered == VECTOR_MIN + 5
        assert sink.received == count
        assert len(buf.latency) == VECTOR_MIN + 5
        assert sink.heard == ({0} if count == len(msgs) else set())


def test_default_deliver_block_cuts_the_payloads_out() -> None:
    got: list[bytes] = []

    class Collect(Sink):
        def deliver(self, payloads: Sequence[bytes], offset: int = 0) -> None:
            got.extend(p[offset:] for p in payloads)

        def disconnected(self, reason: str) -> None:
            pass

        def note(self, reason: str) -> None:
            pass

    Collect().deliver_block(b"xxAAAA..BBBB..", 2, 2, 6, 0, 4)
    assert got == [b"AAAA", b"BBBB"]


def test_a_header_that_does_not_fit_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        header_dtype(40, 10)


def test_churn_pending_takes_the_per_message_path() -> None:
    sink, _, _, _ = _pair()
    sink.deliver([_msg(MEASURE, 0, 0, s) for s in range(VECTOR_MIN)])
    sink.tracker.returned()
    sink.deliver([_msg(MEASURE, 0, 0, s) for s in range(VECTOR_MIN + 10, 2 * VECTOR_MIN + 10)])
    assert sink.tracker.churn_lost == 10
    assert sink.tracker.lost_gaps == 10
    assert sink.delivered == 2 * VECTOR_MIN


def test_sequence_numbers_past_2_to_the_63_are_left_to_the_per_message_path() -> None:
    """Sequence numbers are unsigned: a run across 2**63 or 2**64 must not read as signed."""
    top = 1 << 64
    wrap = [_msg(MEASURE, 0, 0, s % top) for s in range(top - 32, top + 32)]
    late = [_msg(MEASURE, 0, 1, s) for s in range((1 << 63) - 10, (1 << 63) + 60)]
    odd = [_msg(MEASURE, 0, 2, s) for s in (100, (1 << 63) + 50, 10)] + \
        [_msg(MEASURE, 0, 2, s) for s in range(11, 11 + VECTOR_MIN)]
    fast, slow = _feed_both([wrap, late, late[-3:], odd])
    assert fast == slow


def test_payloads_of_unequal_length_are_never_read_at_fixed_offsets() -> None:
    """Lengths that add up to n * size (first and last of the size) still go one by one: a
    header read at the wrong place (here: in a payload's bytes) must not be accounted."""
    fake_header_in_sent = (5 << 32) | 3  # as header bytes: kind 3, topic 0, publisher 5
    odd = HEADER.pack(MEASURE, 0, 1, 2, NOW - 100, fake_header_in_sent) + bytes(88 - HEADER.size)
    batch = [_msg(MEASURE, 0, 1, 0), _msg(MEASURE, 0, 1, 1, size=40), odd]
    batch += [_msg(MEASURE, 0, 1, s) for s in range(3, 64)]
    assert sum(map(len, batch)) == SIZE * len(batch)
    fast, slow = _feed_both([batch])
    assert fast == slow
    assert fast[4] == {1 << 16: 64}  # one stream, in order: nothing invented


def test_a_block_whose_last_item_lacks_its_tail_is_still_accounted() -> None:
    lead, tail = b"$64\r\n", b"\r\n"
    block = b"".join(lead + _msg(MEASURE, 0, 0, s) + tail for s in range(VECTOR_MIN))[:-2]
    sink, buf, _, _ = _pair()
    sink.deliver_block(block, 0, VECTOR_MIN, len(lead) + SIZE + len(tail), len(lead), SIZE)
    assert sink.delivered == VECTOR_MIN and len(buf.latency) == VECTOR_MIN

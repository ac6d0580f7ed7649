from __future__ import annotations

from msgbench.accounting.sequence import SequenceTracker, StreamGaps


def feed(tracker: SequenceTracker, seqs: list[int], key: int = 1) -> int:
    return sum(tracker.observe(key, s) for s in seqs)


def test_in_order_stream_is_all_new() -> None:
    t = SequenceTracker()
    assert feed(t, list(range(100))) == 100
    assert (t.lost_gaps, t.duplicated, t.reordered) == (0, 0, 0)


def test_first_message_sets_the_baseline() -> None:
    t = SequenceTracker()
    assert feed(t, [50, 51, 52]) == 3
    assert t.lost_gaps == 0


def test_gap_then_late_arrival_is_reordering_not_loss() -> None:
    t = SequenceTracker()
    assert feed(t, [0, 1, 4, 5]) == 4
    assert t.lost_gaps == 2
    assert feed(t, [2]) == 1
    assert (t.lost_gaps, t.reordered, t.duplicated) == (1, 1, 0)
    assert feed(t, [2, 5]) == 0
    assert t.duplicated == 2


def test_streams_are_independent() -> None:
    t = SequenceTracker()
    feed(t, [0, 1, 2], key=1)
    feed(t, [0, 2], key=2)
    assert t.lost_gaps == 1


def test_gap_ranges_split_and_forget_oldest() -> None:
    g = StreamGaps()
    g.add(10, 20)
    assert g.fill(15)
    assert g.ranges == [(10, 15), (16, 20)]
    assert not g.fill(15)
    assert not g.fill(25)
    assert g.fill(10) and g.fill(19)
    assert g.ranges == [(11, 15), (16, 19)]

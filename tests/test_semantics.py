"""Delivery semantics: Counters, the topology's rules, and the group union."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msgbench.accounting.counters import Counters
from msgbench.accounting.ranges import ReceivedSet, union
from msgbench.api.target import Pattern
from msgbench.workload.topology import Topology

counts = st.integers(min_value=0, max_value=10**12)


@given(st.lists(counts, min_size=len(Counters.NAMES), max_size=len(Counters.NAMES)),
       st.lists(counts, min_size=len(Counters.NAMES), max_size=len(Counters.NAMES)))
def test_counters_add_and_serialise_from_their_fields(a: list[int], b: list[int]) -> None:
    x = Counters(*a)
    y = Counters(*b)
    s = x + y
    assert [getattr(s, n) for n in Counters.NAMES] == [i + j for i, j in zip(a, b, strict=True)]
    assert (s - y) == x
    assert Counters.from_json(s.to_json()) == s
    assert Counters.total([x, y]) == s


def test_counters_refuse_what_is_not_a_count() -> None:
    with pytest.raises(ValueError, match="delivered"):
        Counters.from_json({"delivered": "lots"})
    with pytest.raises(ValueError, match="lost"):
        Counters.from_json({"lost": True})
    assert Counters.from_json({"delivered": 3, "unknown": "x"}) == Counters(delivered=3)


def test_loss_is_owed_minus_delivered() -> None:
    assert Counters(expected=10, delivered=7).with_loss().lost == 3
    assert Counters(expected=10, delivered=12).with_loss().lost == 0


def test_fanout_owes_every_message_to_every_subscriber_of_its_topic() -> None:
    topo = Topology(Pattern.BROADCAST, pubs=2, subs=5, topics=2)
    assert topo.owed({(0, 0): 10, (1, 1): 4}) == 10 * 3 + 4 * 2
    assert topo.listener(3).group is None
    assert topo.scopes() == [f"s{i}" for i in range(5)]


def test_tasks_owe_every_message_once_to_its_topics_group() -> None:
    topo = Topology(Pattern.TASKS, pubs=2, subs=5, topics=2)
    assert topo.owed({(0, 0): 10, (1, 1): 4}) == 14
    assert topo.listener(3).group == "g1"
    assert topo.groups() == {"g0": 0, "g1": 1}
    assert topo.probe_complete({"g0": {0, 1}, "g1": {1}}) == [("g1", 0)]
    assert topo.probe_complete({"g0": {0, 1}, "g1": {0, 1}}) == []


def test_rpc_owes_one_reply_per_request_and_each_requester_hears_itself() -> None:
    topo = Topology(Pattern.RPC, pubs=3, subs=1, topics=1)
    assert topo.owed({(0, 0): 5, (2, 0): 7}) == 12
    assert topo.owed_to_requester({(0, 0): 5, (2, 0): 7}, 2) == 7
    assert topo.probe_complete({"r0": {0}, "r1": {1}, "r2": set()}) == [("r2", 2)]


def test_redelivery_is_not_a_defect_and_reordering_is_one_only_for_fanout() -> None:
    c = Counters(expected=10, delivered=10, redelivered=4, reordered=2)
    assert Topology(Pattern.TASKS, 1, 2, 1).defects(c) == []
    assert Topology(Pattern.RPC, 1, 2, 1).defects(c) == []
    assert Topology(Pattern.BROADCAST, 1, 2, 1).defects(c) == ["2 deliveries reordered"]
    lost = Counters(expected=10, delivered=7, duplicated=1).with_loss()
    assert Topology(Pattern.TASKS, 1, 2, 1).defects(lost) == ["3 of 10 tasks lost",
                                                              "1 tasks done twice"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=400), st.integers(0, 2**40))
def test_group_union_is_exact_whoever_got_what(owner: list[int], base: int) -> None:
    """Deal a stream's messages to members (some to two members, some to none): the
    union counts each message once, and the repeats are exactly the extra deliveries."""
    members = [ReceivedSet() for _ in range(3)]
    key = 7 << 16
    got: set[int] = set()
    deliveries = 0
    for i, who in enumerate(owner):
        seq = base + i
        if who == 3:
            continue  # lost
        targets = [who] if i % 5 else [who, (who + 1) % 3]  # every fifth one twice
        for m in targets:
            members[m].add_one(key, seq)
            deliveries += 1
        got.add(seq)
    u = union([m.encode() for m in members])
    assert u.unique == len(got)
    assert deliveries - u.unique == sum(1 for i, w in enumerate(owner) if w != 3 and not i % 5)


def test_received_set_counts_repeats_within_a_member_and_across_batches() -> None:
    r = ReceivedSet()
    assert r.add(1, np.array([5, 6, 7], np.int64)) == 3
    assert r.add(1, np.array([7, 7, 8, 2], np.int64)) == 2
    assert (r.received, r.repeated) == (7, 2)
    assert union([r.encode()]).unique == 5


def test_a_corrupt_or_inflated_bitmap_is_refused() -> None:
    r = ReceivedSet()
    r.add(1, np.arange(100, dtype=np.int64))
    enc = r.encode()
    enc["1"]["n"] = 10**9  # claims far more bits than it holds
    with pytest.raises(ValueError, match="claims"):
        union([enc])
    with pytest.raises(ValueError, match="bad bitmap"):
        union([{"1": {"base": 0, "n": 8, "bits": "!!"}}])


def test_a_task_done_by_members_in_two_workers_is_a_duplicate_the_union_finds() -> None:
    """Members in different worker processes each see only counts; the coordinator's
    union of their received sets finds the task both did, and the one neither did."""
    import asyncio

    from msgbench.results.aggregate import Aggregator
    from msgbench.run.control import Done, PubDone, Report
    from msgbench.run.shared import GroupSink
    from msgbench.run.sink import Buffers
    from msgbench.workload.config import RunConfig
    from msgbench.workload.envelope import HEADER, Kind

    cfg = RunConfig(pattern="tasks", pubs=1, subs=2, rate=1000.0)
    agg = Aggregator(cfg)
    msgs = [HEADER.pack(int(Kind.MEASURE), 0, 0, seq, 1, 1) + bytes(32) for seq in range(10)]
    first, second = GroupSink(0, 0, "g0", Buffers()), GroupSink(1, 0, "g0", Buffers())
    asyncio.run(first.handle(msgs[:6]))  # 0..5
    asyncio.run(second.handle(msgs[5:9], redelivered=True))  # 5..8: 5 again, 9 never
    agg.add_pubdone(PubDone(0, [[0, 0, 10]]))
    for w, sink in enumerate((first, second)):
        agg.add_report(Report(w, 0, counters=sink.counters().to_json()))
        agg.add_done(Done(w, [sink.totals()], {str(sink.sub_id): sink.received_set.encode()}))
    c = agg.final_counters()
    assert (c.expected, c.delivered, c.duplicated, c.lost, c.redelivered) == (10, 9, 1, 1, 4)


def test_a_long_runs_seconds_are_kept_encoded_not_as_live_histograms() -> None:
    import numpy as np

    from msgbench.accounting.histogram import Histogram
    from msgbench.results.aggregate import OPEN_SECONDS, Aggregator
    from msgbench.run.control import Report
    from msgbench.workload.config import RunConfig

    agg = Aggregator(RunConfig(rate=1000.0))
    for k in range(50):
        h = Histogram()
        h.record_array(np.full(10, 1000 + k, np.int64))
        agg.add_report(Report(0, k, counters={"delivered": 10, "published": 10},
                              latency=h.encode()))
    live = [k for k, s in agg.seconds.items() if s.live is not None]
    assert len(live) <= OPEN_SECONDS + 1 and max(live) == 49
    late = Histogram()
    late.record_array(np.full(5, 5_000_000, np.int64))
    agg.add_report(Report(1, 3, counters={"delivered": 5}, latency=late.encode()))
    series = agg.series()
    assert [s.delivered for s in series[:5]] == [10, 10, 10, 15, 10]
    assert series[3].max_ns >= 5_000_000 > series[2].max_ns


def test_a_report_timed_for_the_start_that_fired_late_counts_in_the_first_second() -> None:
    """The report timed for the measurement's start is labelled second -1; if it fires late
    it carries measured deliveries, and the series must still add up to the totals."""
    from msgbench.results.aggregate import Aggregator
    from msgbench.run.control import Report
    from msgbench.workload.config import RunConfig

    agg = Aggregator(RunConfig(rate=1000.0))
    agg.add_report(Report(0, -1, counters={"delivered": 6, "published": 6}))
    agg.add_report(Report(0, 0, counters={"delivered": 994, "published": 994}))
    series = agg.series()
    assert [s.delivered for s in series] == [1000]
    assert sum(s.delivered for s in series) == agg.delivered

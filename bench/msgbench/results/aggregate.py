"""Fold worker reports into run totals, per-second series and the summary.

Counters are added as one :class:`~msgbench.accounting.counters.Counters`;
histograms are merged from their encoded form, count by count; throughput uses
deliveries that arrived inside the measured window, latency uses every MEASURE
message however late it arrived. What is owed comes from the run's
:class:`~msgbench.workload.topology.Topology`; for a shared group the unique
deliveries are the union of what its members received.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from msgbench.accounting.counters import Counters
from msgbench.accounting.histogram import Histogram
from msgbench.accounting.ranges import union
from msgbench.api.target import Pattern
from msgbench.results.model import SecondStats, Summary
from msgbench.workload.config import RunConfig
from msgbench.workload.topology import Accounting


class Report(Protocol):
    """What the aggregator reads of a worker's report (``msgbench.run.control.Report``)."""

    @property
    def worker(self) -> int: ...
    @property
    def second(self) -> int: ...
    @property
    def counters(self) -> Mapping[str, int]: ...
    @property
    def latency(self) -> str: ...
    @property
    def latency_raw(self) -> str: ...
    @property
    def publish_delay(self) -> str: ...
    @property
    def extra(self) -> Mapping[str, str]: ...
    @property
    def events(self) -> Sequence[str]: ...
    @property
    def members(self) -> Sequence[Sequence[int]]: ...
    @property
    def depth(self) -> Mapping[str, Sequence[int | None]]: ...


class _Worker(Protocol):
    @property
    def worker(self) -> int: ...


class PubDone(Protocol):
    """What the aggregator reads of a worker's publisher totals."""

    @property
    def worker(self) -> int: ...
    @property
    def published(self) -> Sequence[Sequence[int]]: ...


class Done(Protocol):
    """What the aggregator reads of a worker's final totals."""

    @property
    def subscribers(self) -> Sequence[Mapping[str, Any]]: ...
    @property
    def received(self) -> Mapping[str, Any]: ...


TRANSIT_ALLOWANCE_S = 0.005
"""See :meth:`Aggregator._in_transit`."""
OPEN_SECONDS = 3
"""Seconds kept as live histograms; older ones are kept encoded (a few KiB instead of the
264 KiB of counts a live one holds), so an hour-long run's series stays small."""


@dataclass
class _Second:
    counters: Counters = field(default_factory=Counters)
    live: Histogram | None = field(default_factory=Histogram)
    encoded: str = ""

    def add(self, lat: Histogram) -> None:
        if self.live is None:  # a late report for a closed second: reopen it
            self.live = Histogram.decode(self.encoded)
        self.live.add(lat)

    def latency(self) -> Histogram:
        return self.live if self.live is not None else Histogram.decode(self.encoded)

    def close(self) -> None:
        if self.live is not None:
            self.encoded = self.live.encode()
            self.live = None


class Aggregator:
    """Accumulates what workers send during one run."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.topology = config.topology()
        self.latency = Histogram()
        self.latency_raw = Histogram()
        self.publish_delay = Histogram()
        self.extra: dict[str, Histogram] = {}
        """Further named histograms (request/reply legs ...), merged by name."""
        self.seconds: dict[int, _Second] = defaultdict(_Second)
        self.totals = Counters()
        self.worker_totals: dict[int, Counters] = {}
        """Each worker's reported counters so far: what a publisher that never finished
        (killed, Ctrl-C) had sent, up to its last report."""
        self.published_streams: dict[tuple[int, int], int] = {}
        self.pubdone_workers: set[int] = set()
        self.subscribers: dict[int, dict[str, Any]] = {}
        self.received: dict[str, list[dict[str, Any]]] = defaultdict(list)
        """Per shared group, its members' encoded received sets (from Done)."""
        self.events: list[str] = []
        self.member_seconds: dict[int, dict[int, tuple[int, int, int, int]]] = defaultdict(dict)
        """Per measured second, per group member: (idle ns, fewest tasks held waiting, MEASURE
        tasks received, tasks held waiting at the second's end)."""
        self.depth_seconds: dict[int, dict[str, Sequence[int | None]]] = defaultdict(dict)
        """Per measured second, per group: its queue's [waiting, unacked] at the second's end."""

    def add_report(self, r: Report) -> None:
        """Fold one worker report in."""
        c = Counters.from_json(r.counters)
        self.totals = self.totals + c
        self.worker_totals[r.worker] = self.worker_totals.get(r.worker, Counters()) + c
        self.events.extend(r.events)
        lat = Histogram.decode(r.latency)
        self.latency.add(lat)
        self.latency_raw.add(Histogram.decode(r.latency_raw))
        self.publish_delay.add(Histogram.decode(r.publish_delay))
        for name, text in r.extra.items():
            self.extra.setdefault(name, Histogram()).add(Histogram.decode(text))
        if r.second >= 0:
            for sub, idle_ns, fewest, taken, held in r.members:
                was = self.member_seconds[r.second].get(sub, (0, fewest, 0, 0))
                self.member_seconds[r.second][sub] = (was[0] + idle_ns, min(was[1], fewest),
                                                      was[2] + taken, held)
            self.depth_seconds[r.second].update(r.depth)
        if c.delivered or c.published or c.gaps or c.expected:
            # a report timed for the measurement's start that fired late carries measured
            # messages under second -1; they belong to the first second, or the series
            # would not add up to the totals
            s = self.seconds[max(0, r.second)]
            s.counters = s.counters + c
            s.add(lat)
            for k in range(r.second - OPEN_SECONDS, -1, -1):
                old = self.seconds.get(k)
                if old is None:
                    continue
                if old.live is None:
                    break  # everything before is closed already
                old.close()

    def add_pubdone(self, m: PubDone) -> None:
        """Record how many MEASURE messages each publisher sent on each topic."""
        self.pubdone_workers.add(m.worker)
        for pub, topic, n in m.published:
            self.published_streams[(pub, topic)] = n

    def add_done(self, m: Done) -> None:
        """Record the final per-subscriber totals and group sets of one worker."""
        for s in m.subscribers:
            self.subscribers[int(s["sub"])] = dict(s)
        for sub, enc in m.received.items():
            group = self.subscribers.get(int(sub), {}).get("group")
            self.received[str(group)].append(enc)

    @property
    def delivered(self) -> int:
        """MEASURE deliveries reported so far (for a shared group: new to their member)."""
        return self.totals.delivered

    def expected(self) -> int:
        """Deliveries owed for what the publishers said they sent (see ``Topology.owed``);
        for a publisher worker that never said (it died, the run was interrupted), what its
        reports owed."""
        return (self.topology.owed(self.published_streams)
                + sum(c.expected for c in self._unfinished()))

    def _unfinished(self) -> list[Counters]:
        return [c for w, c in self.worker_totals.items()
                if c.published and w not in self.pubdone_workers]

    def second(self, k: int, backlog: int = 0, encode: bool = False) -> SecondStats | None:
        """The stats of measurement second ``k``, or None if nothing happened in it.

        ``backlog`` is carried through (it needs every earlier second, see :meth:`series`);
        ``encode`` adds the second's encoded latency histogram.
        """
        if k not in self.seconds:
            return None
        s = self.seconds[k]
        c, lat = s.counters, s.latency()
        waiting, unacked = self.queue_depth(k)
        return SecondStats(
            k, c.published, c.delivered, c.gaps, c.duplicated, c.reordered,
            lat.value_at(50.0), lat.value_at(99.0),
            int(lat.hdr.get_max_value()) if lat.count else 0,
            expected=c.expected, backlog=backlog, histogram=lat.encode() if encode else "",
            queue_waiting=waiting, queue_unacked=unacked,
        )

    def queue_depth(self, k: int) -> tuple[int | None, int | None]:
        """The shared groups' queues at the end of second ``k``: tasks waiting, and handed
        out unacknowledged, summed over the groups; None where no design could tell."""
        samples = self.depth_seconds.get(k, {}).values()
        out: list[int | None] = []
        for i in (0, 1):
            known = [d[i] for d in samples if d[i] is not None]
            out.append(sum(v for v in known if v is not None) if known else None)
        return out[0], out[1]

    def idle_with_backlog(self, members: Sequence[int], group: str) -> list[float]:
        """Seconds each member sat with nothing in hand while tasks of its group waited
        elsewhere. Per report second, a member's idle time counts when, all that second,
        another member held tasks queued behind the one it worked on; or the group's queue
        (``Client.queue_depth``) was not empty at the second's start and end; or, at both
        ends, more tasks than :meth:`_in_transit` waited: submitted and not yet received by
        any member (a ZeroMQ pipe, a broker's queue) or held behind another member's task
        (not in the first measured second, whose start is not known). A lower bound:
        shorter waits go unseen."""
        idle = [0] * len(members)
        topic = self.topology.groups().get(group)
        allowance = self._in_transit(len(members))
        published = taken = 0
        design_before = 0
        for k in range(max(self.member_seconds, default=-1) + 1):
            subs = self.member_seconds.get(k, {})
            sec = self.seconds.get(k)
            published += self._published_to(sec, topic) if sec is not None else 0
            taken += sum(subs.get(m, (0, 0, 0, 0))[2] for m in members)
            in_design = published - taken + sum(subs.get(m, (0, 0, 0, 0))[3] for m in members)
            before = self.depth_seconds.get(k - 1, {}).get(group)
            after = self.depth_seconds.get(k, {}).get(group)
            queued = (min(before[0], after[0]) if before and after and before[0] is not None
                      and after[0] is not None else 0)
            piled = min(design_before, in_design) > allowance
            design_before = in_design
            held = {m: subs.get(m, (0, 0, 0, 0)) for m in members}
            total = sum(f for _, f, _, _ in held.values())
            for i, m in enumerate(members):
                idle_ns, fewest, _, _ = held[m]
                if queued > 0 or piled or total - fewest > 0:
                    idle[i] += idle_ns
        return [x / 1e9 for x in idle]

    def series(self) -> list[SecondStats]:
        """Per-second stats in order, with backlog and encoded histograms; an empty second
        is listed as zeros."""
        if not self.seconds:
            return []
        out = []
        owed = 0
        for k in range(max(self.seconds) + 1):
            s = self.seconds.get(k)
            if s is not None:
                # gaps are messages that will never come: owed, but not waiting
                owed += s.counters.expected - s.counters.delivered - s.counters.gaps
            out.append(self.second(k, max(0, owed), encode=True)
                       or SecondStats(k, 0, 0, 0, 0, 0, 0, 0, 0, backlog=max(0, owed)))
        return out

    def final_counters(self) -> Counters:
        """The run's counters: owed from what was published, unique deliveries (a shared
        group's union), loss, and what only the subscribers' final totals know."""
        subs = self.subscribers.values()
        finals = Counters.total(Counters.from_json(s) for s in subs)
        c = replace(
            self.totals,
            published=(sum(self.published_streams.values())
                       + sum(c.published for c in self._unfinished())),
            expected=self.expected(),
            misrouted=finals.misrouted,
            disconnected_subscribers=finals.disconnected_subscribers,
            lost_during_churn=finals.lost_during_churn,
        )
        if self.topology.accounting is Accounting.PER_GROUP and self.received:
            unique = sum(union(members).unique for members in self.received.values())
            c = replace(c, delivered=unique, duplicated=self._group_deliveries() - unique)
        c = c.with_loss()
        if self.topology.pattern is Pattern.RPC:
            c = replace(c, timeouts=max(0, c.expected - (c.delivered - c.late)))
        return replace(c, lost_during_churn=min(c.lost, c.lost_during_churn))

    def groups(self, measured_s: float, killed_at_ns: int = 0) -> dict[str, dict[str, Any]]:
        """Per shared group: its members' shares of the tasks and how fair they were.

        ``shares``: tasks each member did (by subscriber id); ``jain``: Jain's fairness index
        (sum x)^2 / (n sum x^2), 1 when all did the same; ``max_min``: the largest share over
        the smallest; ``utilisation``: busy time over the measured time; ``held_max``: most
        tasks a member held at once; ``recovery_s``: from the ``--kill-worker`` kill to the
        first task delivered again, when there was one; ``idle_with_backlog_s``: see
        :meth:`idle_with_backlog` (and its ``_total_s``).
        """
        out: dict[str, dict[str, Any]] = {}
        members: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for s in self.subscribers.values():
            if "group" in s:
                members[str(s["group"])].append(s)
        for g, ms in sorted(members.items()):
            ms.sort(key=lambda s: int(s["sub"]))
            done = [int(s.get("delivered", 0)) for s in ms]
            total, squares = sum(done), sum(x * x for x in done)
            redo = [int(s.get("first_redelivery_ns", 0)) for s in ms]
            first = min((r for r in redo if r >= killed_at_ns > 0), default=0)
            ids = [int(s["sub"]) for s in ms]
            idle = self.idle_with_backlog(ids, g)
            out[g] = {
                "members": ids,
                "shares": done,
                "jain": total * total / (len(done) * squares) if squares else 1.0,
                "max_min": max(done) / min(done) if min(done) else None,
                "utilisation": [int(s.get("busy_ns", 0)) / 1e9 / measured_s if measured_s
                                else 0.0 for s in ms],
                "held_max": [int(s.get("held_max", 0)) for s in ms],
                "recovery_s": (first - killed_at_ns) / 1e9 if first else None,
                "idle_with_backlog_s": idle,
                "idle_with_backlog_total_s": sum(idle),
            }
        return out

    def _published_to(self, sec: _Second, topic: int | None) -> int:
        """MEASURE tasks submitted in a second to ``topic``'s group (all topics: the one
        group of a single-topic run; several topics split it evenly, as published)."""
        n = sec.counters.published
        groups = max(1, len(self.topology.groups()))
        return n // groups if topic is not None else 0

    def _in_transit(self, members: int) -> float:
        """Tasks that may be on their way at any instant without waiting anywhere: one per
        member, plus what the offered rate submits in :data:`TRANSIT_ALLOWANCE_S` (reports
        of different workers are that far apart at most, and a task takes that long to
        travel)."""
        rate = (self.config.rate or 0.0) * self.config.pubs / max(1, len(self.topology.groups()))
        return members + rate * TRANSIT_ALLOWANCE_S

    def _group_deliveries(self) -> int:
        """MEASURE deliveries to every member, repeats included (for the duplicates)."""
        return sum(int(s.get("measured", 0)) for s in self.subscribers.values())

    def summary(self, cpu_s: float, measured_s: float) -> Summary:
        """The headline figures; ``cpu_s`` is the CPU of all processes in the window and
        ``measured_s`` how long the window really was (shorter than configured when the
        run ended early, zero when it never got there)."""
        cfg = self.config
        in_window = self.totals.delivered_in_window
        rate = in_window / measured_s if measured_s > 0 else 0.0
        return Summary(
            counters=self.final_counters(),
            duration_s=measured_s,
            deliveries_per_s=rate,
            mb_per_s=rate * cfg.size / 1e6,
            cpu_s=cpu_s,
            msgs_per_cpu_s=in_window / cpu_s if cpu_s > 0 else 0.0,
            latency_ns=self.latency.summary().to_json(),
            latency_uncorrected_ns=self.latency_raw.summary().to_json(),
            publish_delay_ns=self.publish_delay.summary().to_json(),
        )

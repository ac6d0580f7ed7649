"""Fold worker reports into run totals, per-second series and the summary.

Histograms are merged from their encoded form, count by count; throughput
uses deliveries that arrived inside the measured window, latency uses every
MEASURE message however late it arrived.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from msgbench.accounting.histogram import Histogram
from msgbench.results.model import SecondStats, Summary
from msgbench.run.control import Done, PubDone, Report
from msgbench.workload.config import RunConfig


@dataclass
class _Second:
    published: int = 0
    expected: int = 0
    delivered: int = 0
    gaps: int = 0
    duplicated: int = 0
    reordered: int = 0
    latency: Histogram = field(default_factory=Histogram)


class Aggregator:
    """Accumulates what workers send during one run."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.latency = Histogram()
        self.latency_raw = Histogram()
        self.publish_delay = Histogram()
        self.seconds: dict[int, _Second] = defaultdict(_Second)
        self.totals: dict[str, int] = defaultdict(int)
        self.published_streams: dict[tuple[int, int], int] = {}
        self.pubdone_workers: set[int] = set()
        self.subscribers: dict[int, dict[str, int]] = {}
        self.events: list[str] = []
        self.out_of_range = 0

    def add_report(self, r: Report) -> None:
        """Fold one worker report in."""
        for k in (
            "published",
            "expected",
            "delivered",
            "received",
            "delivered_in_window",
            "gaps",
            "duplicated",
            "reordered",
        ):
            self.totals[k] += getattr(r, k)
        self.out_of_range += r.out_of_range
        self.events.extend(r.events)
        lat = Histogram.decode(r.latency)
        self.latency.add(lat)
        self.latency_raw.add(Histogram.decode(r.latency_raw))
        self.publish_delay.add(Histogram.decode(r.publish_delay))
        if r.second >= 0 and (r.delivered or r.published or r.gaps or r.expected):
            s = self.seconds[r.second]
            s.published += r.published
            s.expected += r.expected
            s.delivered += r.delivered
            s.gaps += r.gaps
            s.duplicated += r.duplicated
            s.reordered += r.reordered
            s.latency.add(lat)

    def add_pubdone(self, m: PubDone) -> None:
        """Record how many MEASURE messages each publisher sent on each topic."""
        self.pubdone_workers.add(m.worker)
        for pub, topic, n in m.published:
            self.published_streams[(pub, topic)] = n

    def add_done(self, m: Done) -> None:
        """Record the final per-subscriber totals of one worker."""
        for s in m.subscribers:
            self.subscribers[s["sub"]] = s

    @property
    def delivered(self) -> int:
        """Unique MEASURE deliveries reported so far."""
        return self.totals["delivered"]

    def expected(self) -> int:
        """Deliveries owed: each message of a topic once to every subscriber of that topic."""
        per_topic = self.config.subs_per_topic()
        return sum(n * per_topic[t] for (_, t), n in self.published_streams.items())

    def second(self, k: int, backlog: int = 0, encode: bool = False) -> SecondStats | None:
        """The stats of measurement second ``k``, or None if nothing happened in it.

        ``backlog`` is carried through (it needs every earlier second, see :meth:`series`);
        ``encode`` adds the second's encoded latency histogram.
        """
        if k not in self.seconds:
            return None
        s = self.seconds[k]
        lat = s.latency
        return SecondStats(
            k,
            s.published,
            s.delivered,
            s.gaps,
            s.duplicated,
            s.reordered,
            lat.value_at(50.0),
            lat.value_at(99.0),
            int(lat.hdr.get_max_value()) if lat.count else 0,
            expected=s.expected,
            backlog=backlog,
            histogram=lat.encode() if encode else "",
        )

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
                owed += s.expected - s.delivered - s.gaps
            out.append(self.second(k, max(0, owed), encode=True)
                       or SecondStats(k, 0, 0, 0, 0, 0, 0, 0, 0, backlog=max(0, owed)))
        return out

    def summary(self, cpu_s: float) -> Summary:
        """The headline figures; ``cpu_s`` is the CPU of all processes in the window."""
        cfg = self.config
        published = sum(self.published_streams.values()) or self.totals["published"]
        delivered = self.totals["delivered"]
        expected = self.expected()
        in_window = self.totals["delivered_in_window"]
        rate = in_window / cfg.duration_s
        subs = self.subscribers.values()
        return Summary(
            published=published,
            expected=expected,
            delivered=delivered,
            lost=max(0, expected - delivered),
            duplicated=self.totals["duplicated"],
            reordered=self.totals["reordered"],
            gaps=self.totals["gaps"],
            misrouted=sum(s.get("misrouted", 0) for s in subs),
            disconnected_subscribers=sum(s.get("disconnected", 0) for s in subs),
            duration_s=cfg.duration_s,
            deliveries_per_s=rate,
            mb_per_s=rate * cfg.size / 1e6,
            cpu_s=cpu_s,
            msgs_per_cpu_s=in_window / cpu_s if cpu_s > 0 else 0.0,
            latency_ns=self.latency.summary().to_json(),
            latency_uncorrected_ns=self.latency_raw.summary().to_json(),
            publish_delay_ns=self.publish_delay.summary().to_json(),
            latency_out_of_range=self.out_of_range,
            lost_during_churn=min(max(0, expected - delivered),
                                  sum(s.get("lost_during_churn", 0) for s in subs)),
        )

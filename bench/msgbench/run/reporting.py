"""What a worker tells the coordinator about its clients: Reports and the final Done.

Sinks append raw values to shared buffers; :meth:`Reporter.flush` bins them
into the interval's histograms a tenth of a second at a time, and
:meth:`Reporter.report` turns the interval into one :class:`Report` of deltas
since the previous one (counters, histograms, new events, group members'
state, queue depths).
"""

from __future__ import annotations

from msgbench.accounting.counters import Counters
from msgbench.accounting.histogram import Histogram
from msgbench.run import inject
from msgbench.run.clients import Clients
from msgbench.run.control import Done, Report
from msgbench.run.shared import GroupSink
from msgbench.run.sink import Buffers
from msgbench.workload.topology import Topology

NS = 1_000_000_000


class Reporter:
    """The interval's histograms and what was reported so far, for one worker."""

    def __init__(self, worker: int, topology: Topology, open_loop: bool,
                 buffers: Buffers) -> None:
        self.worker = worker
        self.topology = topology
        self.open_loop = open_loop
        self.buffers = buffers
        self.interval = [Histogram(), Histogram(), Histogram()]
        self.extra: dict[str, Histogram] = {}
        self._last = Counters()
        self._events_sent = 0

    def flush(self) -> None:
        """Move the buffered values into the interval's histograms and empty the buffers."""
        b = self.buffers
        for hist, buf in zip(
            self.interval, (b.latency, b.latency_raw, b.publish_delay), strict=True
        ):
            if buf:
                hist.record_array(buf)
                del buf[:]
        for name, buf in b.extra.items():
            if buf:
                self.extra.setdefault(name, Histogram()).record_array(buf)
                del buf[:]

    def report(self, clients: Clients, at_ns: int, measure_start_ns: int) -> Report:
        """The interval ending at ``at_ns`` (attributed to the measurement second before it)
        as deltas since the last report; a new interval begins."""
        self.flush()
        hists = self.interval
        self.interval = [Histogram(), Histogram(), Histogram()]
        extra, self.extra = self.extra, {}
        if not self.open_loop:
            hists[1] = hists[0]  # closed loop: uncorrected == corrected, see SubscriberSink
        sinks = clients.sinks
        published = {(r.pub_id, t): n for r in clients.runners for t, n in enumerate(r.measured)}
        units, cpu_ns = inject.burnt()
        totals = Counters.total(s.counters() for s in sinks) + Counters(
            injected_units=units,
            injected_cpu_ns=cpu_ns,
            published=sum(published.values()),
            expected=self.topology.owed(published),
            latency_out_of_range=sum(h.out_of_range for h in
                                     {id(h): h for h in [*hists, *extra.values()]}.values()),
        )
        deltas = totals - self._last
        self._last = totals
        events = [e for s in sinks for e in s.events]
        new_events = events[self._events_sent :]
        self._events_sent = len(events)
        second = (at_ns - 1 - measure_start_ns) // NS
        return Report(
            worker=self.worker,
            second=int(second),
            latency=hists[0].encode(),
            latency_raw=hists[1].encode(),
            publish_delay=hists[2].encode(),
            extra={name: h.encode() for name, h in extra.items()},
            events=new_events,
            counters=deltas.to_json(),
            members=[[s.sub_id, *s.interval(at_ns)] for s in sinks
                     if isinstance(s, GroupSink)],
            depth=clients.depth.latest() if clients.depth is not None else {},
        )

    def done(self, clients: Clients) -> Done:
        """The final word: per-subscriber totals and group members' received sets."""
        received = {str(s.sub_id): s.received_set.encode() for s in clients.sinks
                    if isinstance(s, GroupSink)}
        return Done(self.worker,
                    [*(s.totals() for s in clients.sinks),
                     *(a.totals() for a in clients.answerers)], received)

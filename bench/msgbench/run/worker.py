"""A worker process: many clients of one target on one uvloop event loop.

The worker builds its subscribers and publishers, then follows the
coordinator's control messages: probe, start, stop. Once a second (every
:data:`DRAIN_REPORT_INTERVAL_S` after publishing ends) it sends a
:class:`~msgbench.run.control.Report` with the deltas since the last one; reports
double as the heartbeat the coordinator watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from msgbench.accounting.counters import Counters
from msgbench.accounting.histogram import Histogram
from msgbench.api.registry import load_target
from msgbench.api.target import Client, Pattern, Subscription
from msgbench.run import inject
from msgbench.run.answer import Answerer
from msgbench.run.churn import away_windows, churn
from msgbench.run.control import (
    Channel,
    Done,
    Failed,
    Kill,
    Message,
    PipeChannel,
    Probe,
    ProbeStatus,
    PubDone,
    Ready,
    Report,
    Start,
    Stop,
)
from msgbench.run.depth import DepthSampler
from msgbench.run.inflight import RequestPublisher
from msgbench.run.publisher import PublisherRunner
from msgbench.run.replies import ReplySink
from msgbench.run.shared import GroupSink
from msgbench.run.sink import Buffers, SubscriberSink
from msgbench.workload.config import RunConfig
from msgbench.workload.topology import requester_scope, subscriber_scope
from msgbench.workload.work import parse_slow_worker, parse_work

REPORT_INTERVAL_S = 1.0
FLUSH_INTERVAL_S = 0.1
DRAIN_REPORT_INTERVAL_S = 0.05
PROBE_INTERVAL_S = 0.05
PROBE_STATUS_INTERVAL_S = 0.1
CLOSE_TIMEOUT_S = 2.0
MAX_MISSING_LISTED = 10
NS = 1_000_000_000
INJECT_ENV = "MSGBENCH_INJECT_COST_NS"


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker runs: its id, the run, the target's endpoint and its clients."""

    worker: int
    config: dict[str, Any]
    endpoint: dict[str, Any]
    pubs: tuple[int, ...]
    subs: tuple[int, ...]

    def to_json(self) -> str:
        """Serialise for the child process (JSON, never pickle)."""
        return json.dumps(
            {
                "worker": self.worker,
                "config": self.config,
                "endpoint": self.endpoint,
                "pubs": list(self.pubs),
                "subs": list(self.subs),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        """Inverse of :meth:`to_json`."""
        d = json.loads(text)
        return cls(d["worker"], d["config"], d["endpoint"], tuple(d["pubs"]), tuple(d["subs"]))

    def describe(self) -> str:
        """A short label: ``worker 2 (pubs 0-3, subs none)``."""
        return f"worker {self.worker} (pubs {_span(self.pubs)}, subs {_span(self.subs)})"


def _span(ids: tuple[int, ...]) -> str:
    if not ids:
        return "none"
    return str(ids[0]) if len(ids) == 1 else f"{ids[0]}-{ids[-1]}"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class Worker:
    """The event-loop side of a worker process."""

    def __init__(self, spec: WorkerSpec, chan: Channel) -> None:
        self.spec = spec
        self.chan = chan
        self.config = RunConfig.from_json(spec.config)
        self.topology = self.config.topology()
        self.buffers = Buffers()
        self.sinks: list[SubscriberSink | GroupSink] = []
        self.answerers: list[Answerer] = []
        self.subscriptions: list[Subscription] = []
        self.runners: list[PublisherRunner] = []
        self.client: Client | None = None
        self.inbox: asyncio.Queue[Message | None] = asyncio.Queue()
        self.tasks: list[asyncio.Task[None]] = []
        self.measure_start_ns = 0
        self.measure_end_ns = 1 << 62
        self.interval = [Histogram(), Histogram(), Histogram()]
        self.extra: dict[str, Histogram] = {}
        self._last = Counters()
        self.depth: DepthSampler | None = None
        self._events_sent = 0

    # -- control ---------------------------------------------------------
    def _on_readable(self) -> None:
        try:
            while self.chan.poll():
                self.inbox.put_nowait(self.chan.recv())
        except (EOFError, OSError):
            # The coordinator is gone: nobody will read our results, leave now.
            self.inbox.put_nowait(None)

    async def run(self) -> None:
        """Build clients, report Ready, then serve control messages until Stop."""
        loop = asyncio.get_running_loop()
        loop.add_reader(self.chan.fileno(), self._on_readable)
        # The loop made the pipe non-blocking; a report or Done larger than the pipe's buffer
        # (thousands of subscribers) would then fail half-written. Sends may block instead:
        # the coordinator reads all the time.
        os.set_blocking(self.chan.fileno(), True)
        target = load_target(self.config.target)
        self.client = target.client(self.spec.endpoint, self.config.target_options)
        if self.topology.pattern is Pattern.RPC:
            await self._build_rpc(self.client)
        else:
            await self._build_pubsub(self.client)
        self.chan.send(Ready(self.spec.worker, len(self.sinks)))
        while True:
            msg = await self.inbox.get()
            if msg is None:
                os._exit(3)
            if isinstance(msg, Probe):
                self._spawn(self._probe())
            elif isinstance(msg, Start):
                self._start(msg)
            elif isinstance(msg, Stop):
                await self._stop()
                return
            elif isinstance(msg, Kill):
                self._final_totals()
                os.kill(os.getpid(), signal.SIGKILL)

    async def _build_pubsub(self, client: Client) -> None:
        topics = self.config.topic_names()
        record_raw = self.config.rate is not None
        for sid in self.spec.subs:
            where = self.topology.listener(sid)
            sink: SubscriberSink | GroupSink
            if where.group is None:
                sink = SubscriberSink(sid, where.topic, self.buffers, self.config.sub_delay_s,
                                      record_raw=record_raw, inject_cost_ns=_injected_cost_ns())
            else:
                slow = parse_slow_worker(self.config.slow_worker)
                sink = GroupSink(sid, where.topic, where.group, self.buffers, record_raw,
                                 parse_work(self.config.work),
                                 slow[1] if slow is not None and slow[0] == sid else 1.0)
            self.sinks.append(sink)
            self.subscriptions.append(
                await client.subscribe(sid, [topics[where.topic]], sink, group=where.group))
        # the worker of a group's first member samples its queue (one sampler per group)
        firsts = {g: topics[t] for g, t in self.topology.groups().items()
                  if self.topology.first_member(g) in self.spec.subs}
        self.depth = DepthSampler(client, firsts)
        for pid in self.spec.pubs:
            pub = await client.publisher(pid)
            self.runners.append(PublisherRunner(pid, pub, self.config, self.buffers))

    async def _build_rpc(self, client: Client) -> None:
        topics = self.config.topic_names()
        for sid in self.spec.subs:
            answerer = Answerer(sid, parse_work(self.config.work))
            self.answerers.append(answerer)
            topic = self.topology.listener(sid).topic
            self.subscriptions.append(await client.responder(sid, [topics[topic]], answerer))
        for pid in self.spec.pubs:
            topic = pid % self.config.topics
            runner: list[PublisherRunner] = []  # the sink asks it what was sent so far

            def sent(runner: list[PublisherRunner] = runner, topic: int = topic) -> int:
                return runner[0].seq[topic] if runner else 0

            sink = ReplySink(pid, topic, self.buffers, self.config.rate is not None,
                             int(self.config.timeout_s * NS), sent)
            self.sinks.append(sink)
            requester = await client.requester(pid, sink)
            runner.append(PublisherRunner(
                pid, RequestPublisher(requester, sink, self.config.inflight, self.config.timeout_s),
                self.config, self.buffers, topics=(topic,)))
            self.runners += runner

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self.tasks.append(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.chan.send(Failed(self.spec.worker, _one_line(exc)))

    # -- phases -----------------------------------------------------------
    async def _probe(self) -> None:
        next_status = 0.0
        while True:
            for r in self.runners:
                await r.probe()
            now = time.monotonic()
            if now >= next_status:
                self.chan.send(self._probe_status())
                next_status = now + PROBE_STATUS_INTERVAL_S
            await asyncio.sleep(PROBE_INTERVAL_S)

    def _probe_status(self) -> ProbeStatus:
        """Local scopes decided here; shared groups' heard publishers for the coordinator."""
        missing: list[list[int | str]] = []
        heard: dict[str, set[int]] = {}
        topo = self.topology
        for s in self.sinks:
            if isinstance(s, GroupSink):
                heard.setdefault(s.group, set()).update(s.heard)
                continue
            scope = (requester_scope(s.sub_id) if topo.pattern is Pattern.RPC
                     else subscriber_scope(s.sub_id))
            missing += [[scope, p] for p in topo.probe_sources(scope) if p not in s.heard]
        return ProbeStatus(self.spec.worker, not missing, missing[:MAX_MISSING_LISTED],
                           {g: sorted(h) for g, h in heard.items()})

    def _start(self, msg: Start) -> None:
        for t in self.tasks:
            t.cancel()
        self.tasks.clear()
        self.measure_start_ns = msg.measure_start_ns
        self.measure_end_ns = msg.measure_end_ns
        for s in self.sinks:
            s.measure_end_ns = msg.measure_end_ns
            if isinstance(s, GroupSink):
                s.measure_start_ns = msg.measure_start_ns
        if self.runners:
            self._spawn(self._publish(msg))
        self._spawn(self._report_loop())
        if self.depth is not None:
            self.depth.start()
        self._spawn(self._flush_loop())
        if self.config.churn_period_s:
            self._start_churn(msg)

    def _start_churn(self, msg: Start) -> None:
        assert self.client is not None
        topics = self.config.topic_names()
        for slot, sink in enumerate(self.sinks):
            if not isinstance(sink, SubscriberSink):
                continue  # churn is a fan-out subscriber's absence
            windows = away_windows(
                sink.sub_id,
                self.config.subs,
                self.config.churn_away_s,
                self.config.churn_period_s,
                msg.measure_start_ns,
                msg.measure_end_ns,
            )
            self._spawn(
                churn(self.client, sink, [topics[sink.topic]], self.subscriptions, slot, windows)
            )

    async def _flush_loop(self) -> None:
        # Binning a second's worth of values at once would stall the loop for tens of
        # milliseconds and show up as latency; a tenth of a second at a time does not.
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            self._flush()

    def _flush(self) -> None:
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

    async def _publish(self, msg: Start) -> None:
        await asyncio.gather(
            *(r.run(msg.start_ns, msg.measure_start_ns, msg.measure_end_ns) for r in self.runners)
        )
        published = [[r.pub_id, t, n] for r in self.runners for t, n in enumerate(r.measured)]
        self.chan.send(PubDone(self.spec.worker, published))

    async def _report_loop(self) -> None:
        while True:
            now = time.monotonic_ns()
            if now < self.measure_end_ns:
                # wake on whole seconds of the measurement so reports line up across workers
                since = now - self.measure_start_ns
                step = int(REPORT_INTERVAL_S * NS)
                wake = self.measure_start_ns + (since // step + 1) * step
                wake = min(wake, self.measure_end_ns)
                await asyncio.sleep(max(0, wake - now) / NS)
                # attribute to the second that just ended, even if the timer fired late
                self._report(wake)
            else:
                await asyncio.sleep(DRAIN_REPORT_INTERVAL_S)
                self._report(time.monotonic_ns())

    def _report(self, at_ns: int) -> None:
        self._flush()
        hists = self.interval
        self.interval = [Histogram(), Histogram(), Histogram()]
        extra, self.extra = self.extra, {}
        if self.config.rate is None:
            hists[1] = hists[0]  # closed loop: uncorrected == corrected, see SubscriberSink
        published = {(r.pub_id, t): n for r in self.runners for t, n in enumerate(r.measured)}
        units, cpu_ns = inject.burnt()
        totals = Counters.total(s.counters() for s in self.sinks) + Counters(
            injected_units=units,
            injected_cpu_ns=cpu_ns,
            published=sum(published.values()),
            expected=self.topology.owed(published),
            latency_out_of_range=sum(h.out_of_range for h in
                                     {id(h): h for h in [*hists, *extra.values()]}.values()),
        )
        deltas = totals - self._last
        self._last = totals
        events = [e for s in self.sinks for e in s.events]
        new_events = events[self._events_sent :]
        self._events_sent = len(events)
        second = (at_ns - 1 - self.measure_start_ns) // NS
        self.chan.send(
            Report(
                worker=self.spec.worker,
                second=int(second),
                latency=hists[0].encode(),
                latency_raw=hists[1].encode(),
                publish_delay=hists[2].encode(),
                extra={name: h.encode() for name, h in extra.items()},
                events=new_events,
                counters=deltas.to_json(),
                members=[[s.sub_id, *s.interval(at_ns)] for s in self.sinks
                         if isinstance(s, GroupSink)],
                depth=self.depth.latest() if self.depth is not None else {},
            )
        )

    async def _stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        self.tasks.clear()
        self._final_totals()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._close_all(), CLOSE_TIMEOUT_S)

    def _final_totals(self) -> None:
        """The last Report and the Done: per-subscriber totals and group members' sets."""
        self._report(time.monotonic_ns())
        received = {str(s.sub_id): s.received_set.encode() for s in self.sinks
                    if isinstance(s, GroupSink)}
        self.chan.send(Done(self.spec.worker,
                            [*(s.totals() for s in self.sinks),
                             *(a.totals() for a in self.answerers)], received))

    async def _close_all(self) -> None:
        if self.depth is not None:
            await self.depth.stop()
        for s in self.sinks:
            if isinstance(s, GroupSink):
                s.close()
        for a in self.answerers:
            a.close()
        for sub in self.subscriptions:
            await sub.close()
        for r in self.runners:
            await r.publisher.close()
        if self.client is not None:
            await self.client.close()


def _injected_cost_ns() -> int:
    """``MSGBENCH_INJECT_COST_NS``: CPU burnt per delivered message, to test regression gates.

    Recorded in the result's environment, so a slowed run never passes for a normal one.
    """
    try:
        return max(0, int(os.environ.get(INJECT_ENV, "0")))
    except ValueError:
        return 0


def worker_main(spec_json: str, conn: Connection) -> None:
    """Entry point of a worker process (``multiprocessing`` target).

    Any exception becomes one :class:`~msgbench.run.control.Failed` line for the
    coordinator instead of a traceback.
    """
    # Ctrl-C reaches the whole process group; the coordinator decides what happens.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    spec = WorkerSpec.from_json(spec_json)
    chan = PipeChannel(conn)
    try:
        import uvloop

        uvloop.run(Worker(spec, chan).run())
    except Exception as exc:
        with contextlib.suppress(Exception):
            chan.send(Failed(spec.worker, _one_line(exc)))
        raise SystemExit(1) from None

"""A worker process: many clients of one target on one uvloop event loop.

The worker builds its subscribers and publishers (:mod:`msgbench.run.clients`), then
follows the coordinator's control messages: probe, start, stop. Once a second (every
:data:`DRAIN_REPORT_INTERVAL_S` after publishing ends) it sends a
:class:`~msgbench.run.control.Report` with the deltas since the last one
(:mod:`msgbench.run.reporting`); reports double as the heartbeat the coordinator watches.
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

from msgbench.api.registry import load_target
from msgbench.api.target import Pattern
from msgbench.run.churn import away_windows, churn
from msgbench.run.clients import Clients, build_clients
from msgbench.run.control import (
    Channel,
    Failed,
    Kill,
    Message,
    PipeChannel,
    Probe,
    ProbeStatus,
    PubDone,
    Ready,
    Start,
    Stop,
)
from msgbench.run.reporting import Reporter
from msgbench.run.shared import GroupSink
from msgbench.run.sink import Buffers, SubscriberSink
from msgbench.run.stall import FLOW_INTERVAL_S
from msgbench.workload.config import RunConfig
from msgbench.workload.topology import requester_scope, subscriber_scope

REPORT_INTERVAL_S = 1.0
FLUSH_INTERVAL_S = 0.1
DRAIN_REPORT_INTERVAL_S = 0.05
PROBE_INTERVAL_S = 0.05
PROBE_STATUS_INTERVAL_S = 0.1
CLOSE_TIMEOUT_S = 2.0
MAX_MISSING_LISTED = 10
NS = 1_000_000_000


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
        self._clients: Clients | None = None
        self.inbox: asyncio.Queue[Message | None] = asyncio.Queue()
        self.tasks: list[asyncio.Task[None]] = []
        self.measure_start_ns = 0
        self.measure_end_ns = 1 << 62
        self.reporter = Reporter(spec.worker, self.topology, self.config.rate is not None,
                                 self.buffers)

    @property
    def clients(self) -> Clients:
        """The clients :meth:`run` built; every control message is handled after that."""
        assert self._clients is not None, "a control message before the clients were built"
        return self._clients

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
        client = target.client(self.spec.endpoint, self.config.target_options)
        self._clients = await build_clients(client, self.config, self.topology, self.buffers,
                                            self.spec.pubs, self.spec.subs)
        self.chan.send(Ready(self.spec.worker, len(self.clients.sinks)))
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
            for r in self.clients.runners:
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
        for s in self.clients.sinks:
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
        for s in self.clients.sinks:
            s.measure_end_ns = msg.measure_end_ns
            if isinstance(s, GroupSink):
                s.measure_start_ns = msg.measure_start_ns
        if self.clients.runners:
            self._spawn(self._publish(msg))
        self._spawn(self._report_loop())
        if self.config.stall_timeout_s > 0:
            self._spawn(self._flow_loop())
        if self.clients.depth is not None:
            self.clients.depth.start()
        self._spawn(self._flush_loop())
        if self.config.churn_period_s:
            self._start_churn(msg)

    def _start_churn(self, msg: Start) -> None:
        topics = self.config.topic_names()
        for slot, sink in enumerate(self.clients.sinks):
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
                churn(self.clients.client, sink, [topics[sink.topic]],
                      self.clients.subscriptions, slot, windows)
            )

    async def _flush_loop(self) -> None:
        # Binning a second's worth of values at once would stall the loop for tens of
        # milliseconds and show up as latency; a tenth of a second at a time does not.
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            self.reporter.flush()

    async def _publish(self, msg: Start) -> None:
        runners = self.clients.runners
        await asyncio.gather(
            *(r.run(msg.start_ns, msg.measure_start_ns, msg.measure_end_ns) for r in runners)
        )
        published = [[r.pub_id, t, n] for r in runners for t, n in enumerate(r.measured)]
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

    async def _flow_loop(self) -> None:
        """The stall watchdog's counts, every :data:`FLOW_INTERVAL_S` of the measured window."""
        await asyncio.sleep(max(0, self.measure_start_ns - time.monotonic_ns()) / NS)
        while (now := time.monotonic_ns()) < self.measure_end_ns:
            self.chan.send(self.clients.flow(self.spec.worker, now))
            await asyncio.sleep(FLOW_INTERVAL_S)

    def _report(self, at_ns: int) -> None:
        self.chan.send(self.reporter.report(self.clients, at_ns, self.measure_start_ns))

    async def _stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        self.tasks.clear()
        self._final_totals()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.clients.close(), CLOSE_TIMEOUT_S)

    def _final_totals(self) -> None:
        """The last Report and the Done: per-subscriber totals and group members' sets."""
        self._report(time.monotonic_ns())
        self.chan.send(self.reporter.done(self.clients))


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

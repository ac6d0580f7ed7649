"""Run one benchmark: serve the target, spawn workers, walk the phases, collect.

Phases: subscribe barrier, probe, warm-up, measure, drain, collect. Every
wait has a deadline and every worker is watched (its process sentinel and its
report heartbeat), so a crash, a hang or a lost message ends the run within
seconds with a reason instead of a stuck terminal. Whatever happens, every
child process is stopped in ``finally`` and what was measured is kept.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from msgbench.api.registry import load_target
from msgbench.api.target import Endpoint, Pattern, ServeSpec, TargetError
from msgbench.results.aggregate import Aggregator
from msgbench.results.assemble import RunFacts, assemble
from msgbench.results.costs import CostMeter
from msgbench.results.model import RunResult, SecondStats
from msgbench.results.records import ALL_LEGS
from msgbench.run.blame import blame_server, interrupted, probe_failure
from msgbench.run.control import (
    Done,
    Failed,
    Flow,
    Message,
    Probe,
    ProbeStatus,
    PubDone,
    Ready,
    Report,
    Start,
)
from msgbench.run.kill import check_victims, kill_worker
from msgbench.run.plan import WorkerPlan, plan_workers
from msgbench.run.pool import POLL_S, RunAborted, WorkerHandle, WorkerPool
from msgbench.run.stall import StallWatch, server_named, stall_watch
from msgbench.run.watch import ServerWatch
from msgbench.workload.config import RunConfig
from msgbench.workload.topology import Accounting

SETUP_TIMEOUT_S = 20.0
START_DELAY_S = 0.2
PUBDONE_GRACE_S = 5.0
DRAIN_MAX_S = 30.0
PROGRESS_LAG_S = 0.15
NS = 1_000_000_000


class Progress(Protocol):
    """Receives what a user watching the run wants to see."""

    def phase(self, name: str) -> None:
        """A phase began (``starting``, ``probing``, ``warm-up``, ``measuring``, ``draining``)."""

    def second(self, stats: SecondStats, lost_so_far: int) -> None:
        """One measurement second completed."""


class NullProgress:
    """Shows nothing."""

    def phase(self, name: str) -> None:
        """See :class:`Progress`."""

    def second(self, stats: SecondStats, lost_so_far: int) -> None:
        """See :class:`Progress`."""


class Coordinator:
    """Runs one configuration and returns its :class:`RunResult`."""

    def __init__(self, config: RunConfig, progress: Progress | None = None) -> None:
        config.validate()
        self.config = config
        self.progress = progress or NullProgress()
        self.target = load_target(config.target)
        self.agg = Aggregator(config)
        self.meter = CostMeter()
        self.pool = WorkerPool()
        self.reasons: list[str] = []
        self.failed = False
        self.endpoint = Endpoint()
        self.watch_heartbeat = False
        self.measure_start_ns = 0
        self.measure_end_ns = 0
        """When the measured window really ended (0 while it has not begun)."""
        self.killed_at_ns = 0
        self.plans: list[WorkerPlan] = []
        self.measure_started_at = ""
        self.watch = ServerWatch(())
        self.stall: StallWatch | None = None

    # -- public -----------------------------------------------------------
    def run(self) -> RunResult:
        """Run every phase; never raises for a failure during the run, only for bad setup.

        Raises :class:`TargetError` when the target cannot run here or rejects
        its options. A failure or Ctrl-C after that yields a partial result
        with status ``failed``.
        """
        availability = self.target.check()
        if not availability.ok:
            raise TargetError(
                f"target {self.config.target!r} cannot run here: {availability.detail}"
            )
        pattern = Pattern(self.config.pattern)
        if pattern not in self.target.patterns:
            does = ", ".join(p.value for p in Pattern if p in self.target.patterns)
            raise TargetError(f"target {self.config.target!r} does not carry the {pattern.value} "
                              f"pattern (it does: {does})")
        self.target.validate(self.config.target_options)
        self.plans = self._plan()
        started = datetime.now(UTC).isoformat(timespec="seconds")
        self.meter.add("coordinator", os.getpid())
        spec = ServeSpec(
            self.config.pubs,
            self.config.subs,
            self.config.topic_names(),
            dict(self.config.target_options),
            size=self.config.size,
            pattern=pattern.value,
        )
        try:
            with self.target.serve(spec) as endpoint:
                self.endpoint = endpoint
                self.progress.phase("starting")
                for proc in endpoint.processes:
                    self.meter.add(proc.role, proc.pid)
                self.watch = ServerWatch((p.role, p.pid) for p in endpoint.processes)
                try:
                    self._phases()
                except RunAborted as exc:
                    self._fail(str(exc))
                except KeyboardInterrupt as exc:
                    self._fail(interrupted(exc))
                finally:
                    self._shutdown()
        except KeyboardInterrupt as exc:
            self._fail(interrupted(exc))
            self._shutdown()
        except (TargetError, OSError) as exc:
            if not self.pool.workers:
                raise
            self._fail(f"target error: {exc}")
            self._shutdown()
        return self._result(started)

    # -- phases -----------------------------------------------------------
    def _phases(self) -> None:
        cfg = self.config
        self._spawn()
        self._wait_until(
            lambda: all(w.ready for w in self.pool.workers),
            time.monotonic() + SETUP_TIMEOUT_S,
            lambda: (
                "workers not ready within "
                f"{SETUP_TIMEOUT_S:.0f} s: "
                + ", ".join(w.spec.describe() for w in self.pool.workers if not w.ready)
            ),
        )
        self.progress.phase("probing")
        self.pool.broadcast(Probe())
        self._wait_until(
            lambda: all(w.probe_complete for w in self.pool.workers) and not self._group_unheard(),
            time.monotonic() + cfg.probe_timeout_s,
            self._probe_failure,
        )
        start_ns = time.monotonic_ns() + int(START_DELAY_S * NS)
        self.measure_start_ns = start_ns + int(cfg.warmup_s * NS)
        measure_end_ns = self.measure_start_ns + int(cfg.duration_s * NS)
        self.pool.broadcast(Start(start_ns, self.measure_start_ns, measure_end_ns))
        self.stall = stall_watch(cfg, self.pool.workers, self.measure_start_ns)
        self.watch_heartbeat = True
        for w in self.pool.workers:
            w.last_heard = time.monotonic()
        if cfg.warmup_s > 0:
            self.progress.phase("warm-up")
        self._wait_until_ns(self.measure_start_ns)
        self.meter.mark_measure_start()
        self.measure_started_at = datetime.now(UTC).isoformat(timespec="milliseconds")
        self.progress.phase("measuring")
        k = 0
        kill_s = cfg.kill_worker_s
        kill_ns = self.measure_start_ns + int(kill_s * NS) if kill_s is not None else None
        while True:
            tick = self.measure_start_ns + (k + 1) * NS + int(PROGRESS_LAG_S * NS)
            if tick > measure_end_ns:
                break
            if kill_s is not None and kill_ns is not None and kill_ns <= tick:
                self._wait_until_ns(kill_ns)
                self.killed_at_ns, reason = kill_worker(self.pool.workers, kill_s)
                self.reasons.append(reason)
                kill_ns = None
            self._wait_until_ns(tick)
            # a process that dies later keeps the CPU it had used by now, not its start's
            self.meter.sample()
            self._show_second(k)
            k += 1
        self._wait_until_ns(measure_end_ns)
        self.meter.mark_measure_end()
        self.measure_end_ns = measure_end_ns
        self.progress.phase("draining")
        pub_workers = [w for w in self.pool.workers if w.spec.pubs]
        self._wait_until(
            lambda: all(w.pub_done for w in pub_workers),
            time.monotonic() + PUBDONE_GRACE_S,
            lambda: (
                "publishers did not finish within "
                f"{PUBDONE_GRACE_S:.0f} s after the measurement ended"
            ),
        )
        self._drain()
        self._show_second(k)  # the last (possibly partial) second

    def _drain(self) -> None:
        expected = self.agg.expected()
        deadline = time.monotonic() + DRAIN_MAX_S
        last_count = -1
        quiet_since = time.monotonic()
        while self.agg.delivered < expected:
            now = time.monotonic()
            # Any arrival counts as life: warm-up messages queued in front of the measured
            # ones are not silence.
            received = self.agg.totals.received
            if received != last_count:
                last_count = received
                quiet_since = now
            if now - quiet_since >= self.config.drain_timeout_s:
                return  # quiet: what has not arrived is lost
            if now >= deadline:
                self.reasons.append(f"drain still receiving after {DRAIN_MAX_S:.0f} s; stopped")
                return
            self._pump(POLL_S)

    def _group_unheard(self) -> list[tuple[str, int]]:
        """(group, publisher) pairs no member of the group has heard, over every worker."""
        topo = self.agg.topology
        if topo.accounting is not Accounting.PER_GROUP:
            return []
        merged: dict[str, set[int]] = {}
        for w in self.pool.workers:
            for g, pubs in w.probe_heard.items():
                merged.setdefault(g, set()).update(pubs)
        return topo.probe_complete(merged)

    def _probe_failure(self) -> str:
        missing = [m for w in self.pool.workers for m in w.probe_missing]
        missing += [[g, p] for g, p in self._group_unheard()]
        return probe_failure(missing, self.config.probe_timeout_s)

    def _show_second(self, k: int) -> None:
        stats = self.agg.second(k)
        if stats is not None:
            self.progress.second(stats, self.agg.totals.gaps)

    # -- workers ----------------------------------------------------------
    def _plan(self) -> list[WorkerPlan]:
        plans = plan_workers(self.config, self.target.colocated)
        check_victims(self.config, plans, self.target.colocated)
        return plans

    def _spawn(self) -> None:
        for w in self.pool.spawn(self.config.to_json(), dict(self.endpoint.data), self.plans):
            if w.process.pid is not None:
                self.meter.add(f"worker {w.spec.worker}", w.process.pid)

    def _wait_until_ns(self, t_ns: int) -> None:
        while True:
            left = (t_ns - time.monotonic_ns()) / NS
            if left <= 0:
                return
            self._pump(min(left, POLL_S))

    def _wait_until(
        self, cond: Callable[[], bool], deadline: float, why: Callable[[], str]
    ) -> None:
        while not cond():
            if time.monotonic() >= deadline:
                raise RunAborted(why())
            self._pump(POLL_S)

    def _pump(self, timeout: float) -> None:
        try:
            self.pool.pump(timeout, self._handle, tolerate=False,
                           watch_heartbeat=self.watch_heartbeat)
        except RunAborted as exc:
            # a client's error is often a server's death seen from the other side: name it
            blamed = blame_server(self.watch, exc)
            if blamed is None:
                raise
            raise blamed from None
        why = self.watch.check()
        if why is not None:
            raise RunAborted(why)
        if self.stall is not None and self.measure_start_ns and not self.measure_end_ns:
            stall = self.stall.check()
            if stall is not None:
                raise RunAborted(f"{server_named(self.endpoint, self.config.target)} stopped "
                                 f"answering: {stall.describe(self.measure_start_ns)}")

    def _handle(self, w: WorkerHandle, msg: Message, tolerate: bool) -> None:
        if isinstance(msg, Flow):
            if self.stall is not None:
                self.stall.feed(msg)
        elif isinstance(msg, Report):
            self.agg.add_report(msg)
            for event in msg.events:
                if event not in self.reasons:
                    self.reasons.append(event)
        elif isinstance(msg, ProbeStatus):
            w.probe_complete = msg.complete
            w.probe_missing = msg.missing
            w.probe_heard = msg.heard
        elif isinstance(msg, Ready):
            w.ready = True
        elif isinstance(msg, PubDone):
            w.pub_done = True
            self.agg.add_pubdone(msg)
        elif isinstance(msg, Done):
            w.done = True
            self.agg.add_done(msg)
        elif isinstance(msg, Failed):
            text = f"{w.spec.describe()} failed: {msg.reason}"
            if tolerate:
                if text not in self.reasons:
                    self.reasons.append(text)
            else:
                raise RunAborted(text)

    def _fail(self, reason: str) -> None:
        if self.measure_start_ns and not self.measure_end_ns:
            # the window ends here: rates and CPU cover the time actually measured
            self.meter.mark_measure_end()
            self.measure_end_ns = time.monotonic_ns()
        self.failed = True
        self.reasons.insert(0, reason)

    def _shutdown(self) -> None:
        """Stop every worker (see :meth:`WorkerPool.shutdown`), measuring them first."""
        self.meter.sample()
        self.reasons.extend(self.pool.shutdown(self._handle, hurry=self.failed))
        if any(not w.done and w.spec.subs for w in self.pool.workers):
            self.failed = True  # the note says whose figures are missing

    # -- result -----------------------------------------------------------
    def _result(self, started: str) -> RunResult:
        kinds = {
            f"worker {w.spec.worker}": (
                "both" if w.spec.pubs and w.spec.subs else "publisher" if w.spec.pubs
                else "subscriber"
            )
            for w in self.pool.workers
        }
        facts = RunFacts(
            started_at=started,
            measure_started_at=self.measure_started_at,
            measure_start_ns=self.measure_start_ns,
            measure_end_ns=self.measure_end_ns,
            killed_at_ns=self.killed_at_ns,
            failed=self.failed,
            reasons=tuple(self.reasons),
            target={"name": self.config.target, **dict(self.endpoint.info)},
            worker_kinds=kinds,
            legs=ALL_LEGS,
        )
        return assemble(self.config, self.agg, self.meter, facts)

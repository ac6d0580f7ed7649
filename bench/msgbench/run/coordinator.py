"""Run one benchmark: serve the target, spawn workers, walk the phases, collect.

Phases: subscribe barrier, probe, warm-up, measure, drain, collect. Every
wait has a deadline and every worker is watched (its process sentinel and its
report heartbeat), so a crash, a hang or a lost message ends the run within
seconds with a reason instead of a stuck terminal. Whatever happens, every
child process is stopped in ``finally`` and what was measured is kept.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from msgbench.api.registry import load_target
from msgbench.api.target import Endpoint, Pattern, ServeSpec, TargetError
from msgbench.kit.urls import mask_url
from msgbench.results import environment
from msgbench.results.aggregate import Aggregator
from msgbench.results.costs import CostMeter, ProcessCost
from msgbench.results.limits import name_limits
from msgbench.results.model import (
    STATUS_DEGRADED,
    STATUS_FAILED,
    STATUS_OK,
    RunResult,
    SecondStats,
)
from msgbench.run.control import (
    Done,
    Failed,
    Kill,
    Message,
    Probe,
    ProbeStatus,
    PubDone,
    Ready,
    Report,
    Start,
)
from msgbench.run.plan import WorkerPlan, plan_workers
from msgbench.run.pool import POLL_S, RunAborted, WorkerHandle, WorkerPool
from msgbench.run.replies import LEGS
from msgbench.run.shared import TASK_HISTOGRAMS
from msgbench.run.watch import ServerWatch
from msgbench.workload.config import RunConfig
from msgbench.workload.topology import Accounting

SETUP_TIMEOUT_S = 20.0
START_DELAY_S = 0.2
PUBDONE_GRACE_S = 5.0
DRAIN_MAX_S = 30.0
PROGRESS_LAG_S = 0.15
NS = 1_000_000_000
SERVER_CAUSE_GRACE_S = 0.5
"""After a worker fails, how long to look for a server whose death it saw: a killed process
closes its sockets before the kernel marks it dead, and on a loaded machine the worker's
report can land in between."""
SERVER_CAUSE_POLL_S = 0.05


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


def _without_secrets(config: dict[str, Any]) -> dict[str, Any]:
    """The config with passwords in URL-valued options masked: results get shared."""
    options = {
        k: mask_url(v) if isinstance(v, str) else v
        for k, v in config.get("target_options", {}).items()
    }
    return {**config, "target_options": options}


def _interrupted(exc: KeyboardInterrupt) -> str:
    """The reason an interrupt gives: the CLI turns SIGTERM / SIGHUP into an interrupt that
    says which signal it was; a bare one is the user's Ctrl-C."""
    return str(exc) or "interrupted by the user (Ctrl-C)"


def _scope_text(scope: str) -> str:
    """``s3`` -> ``subscriber 3``, ``g0`` -> ``group g0``, ``r1`` -> ``requester 1``."""
    kind = {"s": "subscriber ", "g": "group g", "r": "requester "}.get(scope[:1], scope[:1])
    return f"{kind}{scope[1:]}"


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
        self.killed_at_ns = 0
        self.plans: list[WorkerPlan] = []
        """When the measured window really ended (0 while it has not begun)."""
        self.measure_started_at = ""
        self.watch = ServerWatch(())

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
                    self._fail(_interrupted(exc))
                finally:
                    self._shutdown()
        except KeyboardInterrupt as exc:
            self._fail(_interrupted(exc))
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
        kill_ns = (self.measure_start_ns + int(cfg.kill_worker_s * NS)
                   if cfg.kill_worker_s is not None else None)
        while True:
            tick = self.measure_start_ns + (k + 1) * NS + int(PROGRESS_LAG_S * NS)
            if tick > measure_end_ns:
                break
            if kill_ns is not None and kill_ns <= tick:
                self._wait_until_ns(kill_ns)
                self._kill_worker()
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
        if not missing:
            return f"probe timed out after {self.config.probe_timeout_s:g} s"
        pairs = "; ".join(
            f"{_scope_text(str(s))} never heard publisher {p}"
            for _, (s, p) in zip(range(5), missing, strict=False)
        )
        more = f" (and {len(missing) - 5} more pairs)" if len(missing) > 5 else ""
        return f"probe timed out after {self.config.probe_timeout_s:g} s: {pairs}{more}"

    def _show_second(self, k: int) -> None:
        stats = self.agg.second(k)
        if stats is not None:
            self.progress.second(stats, self.agg.totals.gaps)

    # -- workers ----------------------------------------------------------
    def _kill_worker(self) -> None:
        """``--kill-worker``: the first subscriber worker sends its totals, then SIGKILLs
        itself; its members' unfinished tasks are the design's to deliver again or lose."""
        victim = next(w for w in self.pool.workers if w.spec.subs)
        victim.chan.send(Kill())
        self.killed_at_ns = time.monotonic_ns()
        self.reasons.append(
            f"{victim.spec.describe()} killed on purpose {self.config.kill_worker_s:g} s into "
            "the measured window (--kill-worker)")

    def _plan(self) -> list[WorkerPlan]:
        plans = plan_workers(self.config, self.target.colocated)
        if self.config.kill_worker_s is not None and sum(1 for p in plans if p.subs) < 2:
            raise TargetError("--kill-worker needs at least two subscriber worker processes, so "
                              "that someone is left: give more --subs or --procs"
                              + (f" (target {self.config.target!r} runs in one process)"
                                 if self.target.colocated else ""))
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
            cause = self.watch.check(force=True)
            give_up = time.monotonic() + SERVER_CAUSE_GRACE_S
            while cause is None and time.monotonic() < give_up:
                time.sleep(SERVER_CAUSE_POLL_S)
                cause = self.watch.check(force=True)
            if cause is None:
                raise
            raise RunAborted(f"{cause}; then {exc}") from None
        why = self.watch.check()
        if why is not None:
            raise RunAborted(why)

    def _handle(self, w: WorkerHandle, msg: Message, tolerate: bool) -> None:
        if isinstance(msg, Report):
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
        measured_ns = self.measure_end_ns - self.measure_start_ns if self.measure_end_ns else 0
        costs = self.meter.costs()
        if not measured_ns:
            # nothing was measured: no process spent anything "in the window"
            costs = [dataclasses.replace(c, cpu_s=0.0) for c in costs]
            self.reasons.append("the run ended before its measured window: no figures")
        cpu_window = sum(c.cpu_s for c in costs)
        summary = self.agg.summary(cpu_window, measured_ns / NS)
        reasons = list(self.reasons) + self.agg.topology.defects(summary.counters)
        limits = self._limits(costs, summary.publish_delay_ns)
        if self.failed:
            status = STATUS_FAILED
        elif reasons:
            status = STATUS_DEGRADED
        else:
            status = STATUS_OK
        return RunResult(
            config=_without_secrets(self.config.to_json()),
            environment=environment.collect(),
            status=status,
            reasons=reasons,
            partial=self.failed,
            started_at=started,
            summary=summary,
            processes=[c.to_json() for c in costs],
            series=self.agg.series(),
            histograms={
                "latency": self.agg.latency.encode(),
                "latency_uncorrected": self.agg.latency_raw.encode(),
                "publish_delay": self.agg.publish_delay.encode(),
                **{name: h.encode() for name, h in sorted(self.agg.extra.items())},
            },
            subscribers=[self.agg.subscribers[k] for k in sorted(self.agg.subscribers)],
            groups=self.agg.groups(measured_ns / NS, self.killed_at_ns),
            legs={name: self.agg.extra[name].summary().to_json()
                  for name in (*LEGS, *TASK_HISTOGRAMS) if name in self.agg.extra},
            target={"name": self.config.target, **dict(self.endpoint.info)},
            latency_mode="open-loop" if self.config.rate is not None else "closed-loop",
            measure_started_at=self.measure_started_at,
            limits=limits,
            cpu_pressure=self.meter.pressure(),
        )

    def _limits(self, costs: list[ProcessCost], delay: dict[str, Any]) -> list[str]:
        """The run's limits (:func:`name_limits`), workers told apart by what they hold."""
        kinds = {
            f"worker {w.spec.worker}": (
                "both" if w.spec.pubs and w.spec.subs else "publisher" if w.spec.pubs
                else "subscriber"
            )
            for w in self.pool.workers
        }
        open_loop = self.config.rate is not None and delay.get("count")
        return name_limits(
            [c.to_json() for c in costs],
            self.meter.window_s(),
            float(delay["p99"]) if open_loop else None,
            self.meter.pressure(),
            kinds,
        )

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
from typing import Any, Protocol

from msgbench.api.registry import load_target
from msgbench.api.target import Endpoint, ServeSpec, TargetError
from msgbench.kit.urls import mask_url
from msgbench.results import environment
from msgbench.results.aggregate import Aggregator
from msgbench.results.costs import CostMeter
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
    Message,
    Probe,
    ProbeStatus,
    PubDone,
    Ready,
    Report,
    Start,
)
from msgbench.run.plan import plan_workers
from msgbench.run.pool import POLL_S, RunAborted, WorkerHandle, WorkerPool
from msgbench.workload.config import RunConfig

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


def _without_secrets(config: dict[str, Any]) -> dict[str, Any]:
    """The config with passwords in URL-valued options masked: results get shared."""
    options = {
        k: mask_url(v) if isinstance(v, str) else v
        for k, v in config.get("target_options", {}).items()
    }
    return {**config, "target_options": options}


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
        self.measure_started_at = ""

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
        self.target.validate(self.config.target_options)
        started = datetime.now(UTC).isoformat(timespec="seconds")
        self.meter.add("coordinator", os.getpid())
        spec = ServeSpec(
            self.config.pubs,
            self.config.subs,
            self.config.topic_names(),
            dict(self.config.target_options),
            size=self.config.size,
        )
        try:
            with self.target.serve(spec) as endpoint:
                self.endpoint = endpoint
                self.progress.phase("starting")
                for proc in endpoint.processes:
                    self.meter.add(proc.role, proc.pid)
                try:
                    self._phases()
                except RunAborted as exc:
                    self._fail(str(exc))
                except KeyboardInterrupt:
                    self._fail("interrupted by the user (Ctrl-C)")
                finally:
                    self._shutdown()
        except KeyboardInterrupt:
            self._fail("interrupted by the user (Ctrl-C)")
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
            lambda: all(w.probe_complete for w in self.pool.workers),
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
        while True:
            tick = self.measure_start_ns + (k + 1) * NS + int(PROGRESS_LAG_S * NS)
            if tick > measure_end_ns:
                break
            self._wait_until_ns(tick)
            self._show_second(k)
            k += 1
        self._wait_until_ns(measure_end_ns)
        self.meter.mark_measure_end()
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
            received = self.agg.totals["received"]
            if received != last_count:
                last_count = received
                quiet_since = now
            if now - quiet_since >= self.config.drain_timeout_s:
                return  # quiet: what has not arrived is lost
            if now >= deadline:
                self.reasons.append(f"drain still receiving after {DRAIN_MAX_S:.0f} s; stopped")
                return
            self._pump(POLL_S)

    def _probe_failure(self) -> str:
        missing = [(w, m) for w in self.pool.workers for m in w.probe_missing]
        if not missing:
            return f"probe timed out after {self.config.probe_timeout_s:g} s"
        pairs = "; ".join(
            f"subscriber {s} never heard publisher {p}"
            for _, (s, p) in zip(range(5), (m for _, m in missing), strict=False)
        )
        more = f" (and {len(missing) - 5} more pairs)" if len(missing) > 5 else ""
        return f"probe timed out after {self.config.probe_timeout_s:g} s: {pairs}{more}"

    def _show_second(self, k: int) -> None:
        stats = self.agg.second(k)
        if stats is not None:
            self.progress.second(stats, self.agg.totals["gaps"])

    # -- workers ----------------------------------------------------------
    def _spawn(self) -> None:
        plans = plan_workers(self.config, self.target.colocated)
        for w in self.pool.spawn(self.config.to_json(), dict(self.endpoint.data), plans):
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
        self.pool.pump(timeout, self._handle, tolerate=False, watch_heartbeat=self.watch_heartbeat)

    def _handle(self, w: WorkerHandle, msg: Message, tolerate: bool) -> None:
        if isinstance(msg, Report):
            self.agg.add_report(msg)
            for event in msg.events:
                if event not in self.reasons:
                    self.reasons.append(event)
        elif isinstance(msg, ProbeStatus):
            w.probe_complete = msg.complete
            w.probe_missing = msg.missing
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
        self.failed = True
        self.reasons.insert(0, reason)

    def _shutdown(self) -> None:
        """Stop every worker (see :meth:`WorkerPool.shutdown`), measuring them first."""
        self.meter.sample()
        self.reasons.extend(self.pool.shutdown(self._handle))

    # -- result -----------------------------------------------------------
    def _result(self, started: str) -> RunResult:
        costs = self.meter.costs()
        cpu_window = sum(c.cpu_s for c in costs)
        summary = self.agg.summary(cpu_window)
        reasons = list(self.reasons)
        if summary.lost:
            churn = summary.lost_during_churn
            detail = (
                f" ({churn} while subscribers were away, {summary.lost - churn} while connected)"
                if churn
                else ""
            )
            reasons.append(f"{summary.lost} of {summary.expected} expected deliveries lost{detail}")
        if summary.duplicated:
            reasons.append(f"{summary.duplicated} deliveries duplicated")
        if summary.reordered:
            reasons.append(f"{summary.reordered} deliveries reordered")
        if summary.misrouted:
            reasons.append(f"{summary.misrouted} deliveries on a topic never subscribed to")
        if summary.latency_out_of_range:
            reasons.append(
                f"{summary.latency_out_of_range} latency values outside the "
                "histogram range (clamped)"
            )
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
            },
            subscribers=[self.agg.subscribers[k] for k in sorted(self.agg.subscribers)],
            target={"name": self.config.target, **dict(self.endpoint.info)},
            latency_mode="open-loop" if self.config.rate is not None else "closed-loop",
            measure_started_at=self.measure_started_at,
        )

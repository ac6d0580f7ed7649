"""Capacity search: the highest rate a workload sustains within a latency bound, without loss.

Ramp the per-publisher rate by ``factor`` until a step fails, then bisect (geometrically)
between the highest pass and the lowest failure until they are within ``precision``. Every
step is a fresh ``msgbench run`` subprocess (:class:`~msgbench.orchestration.sweep.Runner`),
so no state leaks from one rate to the next. A step passes when nothing is lost, no subscriber
was disconnected, the run is ``ok``, the publishers kept their schedule (publish delay p99),
deliveries kept up with what was owed, and p99 is within the SLO. The search is bounded in
wall time; Ctrl-C and the budget both stop it with the steps done.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from msgbench.analysis.labels import variant
from msgbench.analysis.units import format_ns
from msgbench.orchestration.sweep import Cell, Outcome, Runner, _arg_duration
from msgbench.results.capacity import (
    PHASE_BISECT,
    PHASE_HALF,
    PHASE_RAMP,
    STOP_BUDGET,
    STOP_CEILING,
    STOP_CONVERGED,
    STOP_FLOOR,
    STOP_INTERRUPTED,
    CapacityResult,
    Criteria,
    Step,
    write_capacity,
)
from msgbench.workload.values import parse_duration

DEFAULT_SLO = "10ms"
PUBLISH_DELAY_SHARE_OF_SLO = 0.5
"""Default publish delay bound, as a share of the SLO: publishers more than half the latency
budget behind their schedule did not offer the rate. (Latency counts from the intended send
time, so the delay is inside p99 already; this bound names the cause when the publishers, not
the target, fall behind. The pacing on an idle machine adds tens to hundreds of microseconds;
on a machine shared with other loads it can add milliseconds, and then this is what fails.)"""
DEFAULT_STEP_DRAIN = "1s"
"""Drain timeout of a step (unless the run arguments give one): a straggler later than this
has failed the SLO anyway, and a shorter drain keeps each step short."""
STEP_OVERHEAD_S = 5.0
"""Start-up, probe and drain of a step beyond warm-up + duration: the budget's first guess."""
BUSY_SHARE = 0.9
"""A process at this share of a core or more is saturated."""
CONTENDED_SHARE = 0.5
"""A failing step whose busiest process used less than this share of a core was not limited
by its own work: it waited for a CPU that other load on the machine held."""
MSGBENCH_ROLES = ("coordinator", "worker")
"""Roles of msgbench's own processes: a limit there measures msgbench, not the target."""


@dataclass(frozen=True)
class Plan:
    """How to search."""

    start_rate: float = 1000.0
    """First per-publisher rate."""
    factor: float = 2.0
    """Ramp multiplier (up after a pass, down after a failure, until the knee is bracketed)."""
    precision: float = 0.1
    """Stop bisecting when the highest pass is within this fraction of the lowest failure."""
    min_rate: float = 1.0
    max_rate: float = 10e6
    budget_s: float = 300.0
    """Wall-time bound of the whole search, steps included."""
    half: bool = True
    """After the knee, run one step at 50 % of the capacity."""
    first_step_s: float | None = None
    """The budget's guess of a step's wall time before one has run (None: warm-up + duration
    + :data:`STEP_OVERHEAD_S`); later guesses are the longest step so far."""


def _share(proc: dict[str, Any], duration_s: float) -> float | None:
    share = proc.get("core_share")
    if isinstance(share, int | float):
        return float(share)
    cpu = proc.get("cpu_s")
    if isinstance(cpu, int | float) and duration_s > 0:
        return float(cpu) / duration_s
    return None


def busiest(processes: list[dict[str, Any]]) -> str:
    """``worker 1 at 97 % of a core`` for the process with the highest core share, saying
    when it is one of msgbench's own (then the run measured msgbench, not the target)."""
    best = max(processes, key=lambda p: p.get("core_share") or -1.0, default=None)
    if best is None or best.get("core_share") is None:
        return ""
    role, share = str(best.get("role", "?")), float(best["core_share"])
    text = f"{role} at {share:.0%} of a core"
    if share >= BUSY_SHARE and role.startswith(MSGBENCH_ROLES):
        text += " (msgbench's own process: this measures msgbench, not the target)"
    return text


def judge(outcome: Outcome, criteria: Criteria) -> tuple[bool, str]:
    """Whether a step passes the criteria, and if not the first reason, for people."""
    r = outcome.result
    if r is None or not outcome.ran:
        return False, outcome.reason or (r.status if r else "the run did not finish")
    n, s = r.summary.counters, r.summary
    if n.lost:
        return False, f"lost {n.lost:,}"
    if n.disconnected_subscribers:
        return False, f"{n.disconnected_subscribers} subscriber(s) disconnected"
    if r.status != "ok":
        return False, r.reasons[0] if r.reasons else r.status
    delay = s.publish_delay_ns.get("p99") if s.publish_delay_ns.get("count") else None
    if delay is not None and delay > criteria.max_publish_delay_ns:
        return False, (f"publishers behind schedule: publish delay p99 {format_ns(delay)} > "
                       f"{format_ns(criteria.max_publish_delay_ns)}")
    owed_per_s = n.expected / s.duration_s if s.duration_s > 0 else 0.0
    if owed_per_s and s.deliveries_per_s < criteria.min_delivered_ratio * owed_per_s:
        return False, (f"delivered {s.deliveries_per_s:,.0f}/s of {owed_per_s:,.0f}/s owed "
                       "within the window")
    if not s.latency_ns.get("count"):
        return False, "no latency recorded"
    p99 = s.latency_ns["p99"]
    if p99 > criteria.slo_p99_ns:
        return False, f"p99 {format_ns(p99)} > SLO {format_ns(criteria.slo_p99_ns)}"
    return True, ""


def _raw(path: Path | None) -> dict[str, Any]:
    """The step's result document as written (for keys this msgbench's model may not know,
    such as ``limits``)."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def make_step(outcome: Outcome, rate: float, pubs: int, phase: str, criteria: Criteria,
              doc_dir: Path, elapsed_s: float) -> Step:
    """The :class:`Step` of a finished run (or of one that left no result)."""
    passed, why = judge(outcome, criteria)
    r = outcome.result
    base = Step(rate=rate, offered=rate * pubs, phase=phase, passed=passed, why=why,
                status=r.status if r else "error", elapsed_s=round(elapsed_s, 2))
    if r is None:
        return base
    s, lat = r.summary, r.summary.latency_ns
    raw = _raw(outcome.path)
    procs = [{"role": p.get("role", "?"), "cpu_s": p.get("cpu_s"),
              "core_share": _share(p, s.duration_s)} for p in r.processes]
    limits = raw.get("limits") or getattr(r, "limits", None) or []
    has_lat = bool(lat.get("count"))
    delay = s.publish_delay_ns
    file = ""
    if outcome.path is not None:
        try:
            file = outcome.path.relative_to(doc_dir).as_posix()
        except ValueError:
            file = str(outcome.path)
    return replace(
        base, deliveries_per_s=s.deliveries_per_s, mb_per_s=s.mb_per_s,
        msgs_per_cpu_s=s.msgs_per_cpu_s,
        p50_ns=int(lat["p50"]) if has_lat else None,
        p99_ns=int(lat["p99"]) if has_lat else None,
        p999_ns=int(lat["p999"]) if has_lat else None,
        publish_delay_p99_ns=int(delay["p99"]) if delay.get("count") else None,
        lost=s.counters.lost, disconnected=s.counters.disconnected_subscribers,
        processes=procs, limit=str(limits[0]) if limits else busiest(procs), file=file,
    )


def _round_rate(rate: float) -> float:
    """Three significant digits: rates people can read and type again."""
    return float(f"{rate:.3g}")


def step_estimate_s(cell: Cell) -> float:
    """A first guess of a step's wall time, before one has been measured."""
    return parse_duration(cell.duration) + parse_duration(cell.warmup) + STEP_OVERHEAD_S


def with_step_defaults(cell: Cell) -> Cell:
    """``cell`` with the step drain timeout unless its arguments set one."""
    if _arg_duration(cell.args, "--drain-timeout", -1.0) >= 0:
        return cell
    return replace(cell, args=(*cell.args, "--drain-timeout", DEFAULT_STEP_DRAIN))


StepCallback = Callable[[Step], None]
STATUS_OUT_OF_BUDGET = "out of budget"
"""Status of a step killed because the search's budget ran out while it was under way."""


@dataclass(frozen=True)
class BoundedCell(Cell):
    """A cell whose hang timeout is also bounded by what is left of the search's budget, so a
    step that hangs cannot carry the search past ``--budget``."""

    limit_s: float = float("inf")

    def timeout_s(self) -> float:
        """The cell's own hang timeout, or the budget left if that is sooner."""
        return min(super().timeout_s(), self.limit_s)


class _BudgetSpent(Exception):
    """The budget ran out during a step."""
EXIT_USAGE = 2
"""Exit code of ``msgbench run`` for bad input."""


class BadWorkload(ValueError):
    """The first step was refused as bad input: every step would be; one line for the user."""


@dataclass
class Search:
    """One capacity search: ``run()`` returns the result and writes it after every step."""

    cell: Cell
    """The workload; its ``rate`` is ignored."""
    criteria: Criteria
    plan: Plan
    doc_path: Path
    """Where the capacity document goes; step results go into the directory beside it
    named like it without ``.json``."""
    runner: Runner
    on_step: StepCallback | None = None

    def __post_init__(self) -> None:
        self.steps: list[Step] = []
        self.started = time.monotonic()
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.environment: dict[str, Any] = {}
        self.config: dict[str, Any] = {}
        self.cell = with_step_defaults(self.cell)

    @property
    def steps_dir(self) -> Path:
        """Directory of the steps' run results."""
        return self.doc_path.with_suffix("")

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    def _fits(self) -> bool:
        first = self.plan.first_step_s
        guess = step_estimate_s(self.cell) if first is None else first
        longest = max((s.elapsed_s for s in self.steps), default=guess)
        return self._elapsed() + longest <= self.plan.budget_s

    def _step(self, rate: float, phase: str) -> Step:
        t0 = time.monotonic()
        left = max(1.0, self.plan.budget_s - self._elapsed())
        fields = {f.name: getattr(self.cell, f.name) for f in dataclasses.fields(Cell)}
        cell = BoundedCell(**{**fields, "rate": f"{rate:g}"}, limit_s=left)
        outcome = self.runner.run(cell, self.steps_dir)
        if outcome.returncode == EXIT_USAGE and outcome.result is None and not self.steps:
            raise BadWorkload(outcome.reason)
        step = make_step(outcome, rate, self.cell.pubs, phase, self.criteria,
                         self.doc_path.parent, time.monotonic() - t0)
        spent = outcome.result is None and self._elapsed() >= self.plan.budget_s
        if spent:
            step = replace(step, status=STATUS_OUT_OF_BUDGET,
                           why="the budget ran out during this step: killed")
        if outcome.result is not None and not self.config:
            self.config, self.environment = outcome.result.config, outcome.result.environment
        self.steps.append(step)
        self.save(STOP_INTERRUPTED)  # a kill from here on still leaves every step done
        if self.on_step is not None:
            self.on_step(step)
        if spent:
            raise _BudgetSpent
        return step

    def run(self) -> CapacityResult:
        """Search; stops converged, at the ceiling or floor, at the budget, or on Ctrl-C
        (then the steps done are kept and the result says ``interrupted``)."""
        try:
            stopped = self._search()
            lo = self._capacity()
            # the knee stands without the half step; no time left for it only leaves it out
            if (stopped != STOP_BUDGET and self.plan.half and lo is not None
                    and lo / 2 >= self.plan.min_rate and self._fits()):
                self._step(_round_rate(lo / 2), PHASE_HALF)
        except _BudgetSpent:
            stopped = STOP_BUDGET
        except KeyboardInterrupt:
            stopped = STOP_INTERRUPTED
        return self.save(stopped)

    def _search(self) -> str:
        p = self.plan
        rate = _round_rate(min(max(p.start_rate, p.min_rate), p.max_rate))
        lo: float | None = None
        hi: float | None = None
        phase = PHASE_RAMP
        while True:
            if not self._fits():
                return STOP_BUDGET
            step = self._step(rate, phase)
            if step.passed:
                lo = max(lo or rate, rate)
            else:
                hi = min(hi or rate, rate)
            if hi is None:
                if rate >= p.max_rate:
                    return STOP_CEILING
                rate = _round_rate(min(rate * p.factor, p.max_rate))
            elif lo is None:
                if rate <= p.min_rate:
                    return STOP_FLOOR
                rate = _round_rate(max(rate / p.factor, p.min_rate))
            else:
                if hi <= lo * (1 + p.precision):
                    return STOP_CONVERGED
                rate = _round_rate(math.sqrt(lo * hi))
                if not lo < rate < hi:
                    return STOP_CONVERGED
                phase = PHASE_BISECT

    def _capacity(self) -> float | None:
        passed = [s.rate for s in self.steps if s.passed and s.phase != PHASE_HALF]
        return max(passed, default=None)

    def _limit(self, capacity: float | None, stopped: str) -> str:
        above = sorted((s for s in self.steps if not s.passed and s.phase != PHASE_HALF
                        and s.status != STATUS_OUT_OF_BUDGET
                        and (capacity is None or s.rate > capacity)), key=lambda s: s.rate)
        if above:
            knee = above[0]
            why = f"at {knee.offered:,.0f} msgs/s: {knee.why}"
            text = f"{knee.limit} ({why})" if knee.limit else why
            shares = [p["core_share"] for p in knee.processes
                      if isinstance(p.get("core_share"), int | float)]
            if shares and max(shares) < CONTENDED_SHARE:
                text += ("; no process was near a full core: other load on the machine, not "
                         "this workload, set this limit")
            return text
        if stopped == STOP_CEILING:
            return "none reached: every step up to --max-rate passed"
        return self.steps[-1].limit if self.steps else ""

    def workload(self) -> dict[str, Any]:
        """What was measured: the cell's fields and, once a step ran, pattern and variant."""
        c = self.cell
        return {
            "target": c.target, "target_name": c.target_name,
            "variant": variant(self.config) if self.config else "",
            "pattern": self.config.get("pattern", "broadcast"),
            "pubs": c.pubs, "subs": c.subs, "size": c.size, "topics": c.topics,
            "duration": c.duration, "warmup": c.warmup, "args": list(c.args),
        }

    def save(self, stopped: str) -> CapacityResult:
        """Write the document as it stands and return it."""
        capacity = self._capacity()
        result = CapacityResult(
            workload=self.workload(), criteria=self.criteria, steps=list(self.steps),
            capacity_rate=capacity, stopped=stopped, limit=self._limit(capacity, stopped),
            started_at=self.started_at, elapsed_s=round(self._elapsed(), 1),
            budget_s=self.plan.budget_s, environment=self.environment,
        )
        write_capacity(result, self.doc_path)
        return result


def doc_name(cell: Cell) -> str:
    """``20261202-013000-capacity-zmq-4x32.json``."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-capacity-{cell.target_name}-{cell.pubs}x{cell.subs}.json"

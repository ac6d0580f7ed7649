"""Tables of task runs (``--pattern tasks``): throughput, the ledger, fairness, latency.

Three tables: one row per run (tasks/s, tasks per CPU-second and the ledger: submitted,
completed, lost, duplicated, redelivered, orphaned; the groups' fairness), one row per run
for latency (completion from the intended submit and its uncorrected twin, queue wait,
service time), and one row per group member (share, utilisation, most held at once,
seconds idle while its group's tasks waited). Figures a file does not hold (older files
lack queue wait, service and idle time) print as ``-`` and stay empty in CSV.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from msgbench.analysis.labels import format_rate, variant
from msgbench.analysis.sections import (
    Section,
    csv_cell,
    opt,
    pct,
    ratio,
    seconds,
    spread,
    whole,
)
from msgbench.analysis.units import format_count
from msgbench.results.model import RunResult
from msgbench.results.records import QUEUE_WAIT, QUEUE_WAIT_UNCORRECTED, SERVICE


def pattern_variant(cfg: dict[str, Any]) -> str:
    """The run's variant without the pattern name (the table's title says it)."""
    return variant(cfg).removeprefix(str(cfg.get("pattern", ""))).strip()


@dataclass(frozen=True)
class TaskRow:
    """One task run's headline figures (ns for latencies; None: not in the file)."""

    name: str
    target: str
    variant: str
    producers: int
    workers: int
    rate: float | None
    status: str
    partial: bool
    reasons: tuple[str, ...]
    limit: str
    tasks_per_s: float
    """Tasks completed inside the measured window, per second of it."""
    tasks_per_cpu_s: float
    submitted: int
    completed: int
    """Unique tasks done (a task done twice counts once here, once in ``duplicated``)."""
    lost: int
    duplicated: int
    redelivered: int
    orphaned: int
    jain: float | None
    """The least fair group's Jain index (1: equal shares)."""
    max_min: float | None
    """The largest max/min share over the groups (inf: a member did none)."""
    recovery_s: float | None
    idle_with_backlog_s: float | None
    """Seconds members sat idle while their group's tasks waited, summed over groups."""
    completion: tuple[int | None, ...]
    """p50, p99, p99.9, max of completion (from the intended submit)."""
    uncorrected: tuple[int | None, ...]
    """p50, p99 of completion from the actual send."""
    queue_wait: tuple[int | None, ...]
    """p50, p99 from the intended submit, p99 from the actual send."""
    service: tuple[int | None, ...]
    """p50, p99."""

    @classmethod
    def from_result(cls, path: Path | str, r: RunResult) -> TaskRow:
        """The row of a task run's result document."""
        cfg, s, n = r.config, r.summary, r.summary.counters
        groups = list(r.groups.values())
        idle = [g["idle_with_backlog_total_s"] for g in groups
                if g.get("idle_with_backlog_total_s") is not None]
        recovery = [g["recovery_s"] for g in groups if g.get("recovery_s") is not None]
        qw, qwu, svc = (r.legs.get(k) for k in (QUEUE_WAIT, QUEUE_WAIT_UNCORRECTED, SERVICE))
        lat, raw = s.latency_ns, s.latency_uncorrected_ns
        return cls(
            name=Path(path).name, target=cfg["target"], variant=pattern_variant(cfg),
            producers=cfg["pubs"], workers=cfg["subs"], rate=cfg["rate"], status=r.status,
            partial=r.partial, reasons=tuple(r.reasons), limit=r.limits[0] if r.limits else "",
            tasks_per_s=s.deliveries_per_s, tasks_per_cpu_s=s.msgs_per_cpu_s,
            submitted=n.published, completed=n.delivered, lost=n.lost,
            duplicated=n.duplicated, redelivered=n.redelivered, orphaned=n.orphaned,
            jain=min((float(g["jain"]) for g in groups), default=None),
            max_min=max((math.inf if g.get("max_min") is None else float(g["max_min"])
                         for g in groups), default=None),
            recovery_s=max(recovery) if recovery else None,
            idle_with_backlog_s=sum(idle) if idle else None,
            completion=tuple(pct(lat, k) for k in ("p50", "p99", "p999", "max")),
            uncorrected=(pct(raw, "p50"), pct(raw, "p99")),
            queue_wait=(pct(qw, "p50"), pct(qw, "p99"), pct(qwu, "p99")),
            service=(pct(svc, "p50"), pct(svc, "p99")),
        )


@dataclass(frozen=True)
class MemberRow:
    """One member of a shared group in one run."""

    name: str
    run: str
    group: str
    member: int
    tasks: int
    share: float
    """Its part of the group's tasks (0..1)."""
    utilisation: float | None
    held_max: int | None
    idle_with_backlog_s: float | None


def _at(values: Any, i: int) -> Any:
    return values[i] if isinstance(values, list) and i < len(values) else None


def member_rows(path: Path | str, r: RunResult) -> list[MemberRow]:
    """One row per member of every group of a task run."""
    label = " ".join(p for p in (r.config["target"], pattern_variant(r.config)) if p)
    out = []
    for gname, g in r.groups.items():
        shares = [int(x) for x in g.get("shares", [])]
        total = sum(shares)
        for i, member in enumerate(g.get("members", range(len(shares)))):
            tasks = shares[i] if i < len(shares) else 0
            out.append(MemberRow(
                Path(path).name, label, gname, int(member), tasks,
                tasks / total if total else 0.0, _at(g.get("utilisation"), i),
                _at(g.get("held_max"), i), _at(g.get("idle_with_backlog_s"), i)))
    return out


def status_text(status: str, partial: bool, reasons: Sequence[str], width: int) -> str:
    """Status, ``(partial)``, and the first reason cut to ``width``."""
    text = status + (" (partial)" if partial else "")
    if reasons and status != "ok":
        first = reasons[0] if len(reasons[0]) <= width else reasons[0][: width - 3] + "..."
        text += f": {first}" + (f" (+{len(reasons) - 1})" if len(reasons) > 1 else "")
    return text


def cut_limit(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters; ``-`` when empty."""
    return "-" if not text else text if len(text) <= width else text[: width - 3] + "..."


def _max_min(value: float | None) -> str:
    return opt(value, lambda v: "inf" if math.isinf(v) else f"{v:.2f}")


RUN_HEADERS = (
    "target", "variant", "prod x workers", "rate", "tasks/s", "tasks/CPU-s", "submitted",
    "completed", "lost", "dup", "redeliv.", "orphaned", "Jain", "max/min",
    "recovery", "idle/backlog", "status",
)
LATENCY_HEADERS = (
    "target", "variant", "prod x workers", "completion p50 / p99 / p99.9 / max",
    "uncorrected p50 / p99", "queue wait p50 / p99 / uncorr. p99", "service p50 / p99",
    "first limit",
)
MEMBER_HEADERS = ("run", "file", "group", "member", "tasks", "share", "busy", "held max",
                  "idle w/ backlog")


def sections(runs: Sequence[tuple[Path | str, RunResult]], reason_chars: int) -> list[Section]:
    """The three tables of these task runs (members only when some run has groups)."""
    rows = [TaskRow.from_result(p, r) for p, r in runs]
    classes = tuple(r.status for r in rows)
    body = tuple((
        r.target, r.variant, f"{r.producers} x {r.workers}", format_rate(r.rate),
        format_count(r.tasks_per_s), format_count(r.tasks_per_cpu_s), whole(r.submitted),
        whole(r.completed), whole(r.lost), whole(r.duplicated), whole(r.redelivered),
        whole(r.orphaned), ratio(r.jain, 3), _max_min(r.max_min), seconds(r.recovery_s),
        seconds(r.idle_with_backlog_s),
        status_text(r.status, r.partial, r.reasons, reason_chars),
    ) for r in rows)
    latency = tuple((
        r.target, r.variant, f"{r.producers} x {r.workers}",
        *(spread(v) for v in (r.completion, r.uncorrected, r.queue_wait, r.service)),
        cut_limit(r.limit, reason_chars),
    ) for r in rows)
    out = [
        Section("tasks", RUN_HEADERS, frozenset(range(3, 16)), body, classes),
        Section("task latency (completion from the intended submit) and the first limit",
                LATENCY_HEADERS, frozenset(range(3, len(LATENCY_HEADERS) - 1)), latency, classes),
    ]
    members = [(m, r.status) for p, r in runs for m in member_rows(p, r)]
    if members:
        out.append(Section("task workers", MEMBER_HEADERS, frozenset(range(3, 9)), tuple((
            m.run, m.name, m.group, str(m.member), whole(m.tasks), f"{m.share:.1%}",
            opt(m.utilisation, lambda v: f"{v:.0%}"), whole(m.held_max),
            seconds(m.idle_with_backlog_s),
        ) for m, _ in members), tuple(s for _, s in members)))
    return out


CSV_HEADERS = (
    "file", "target", "variant", "producers", "workers", "rate", "tasks_per_s",
    "tasks_per_cpu_s", "submitted", "completed", "lost", "duplicated", "redelivered",
    "orphaned", "jain", "max_min", "recovery_s", "idle_with_backlog_s", "completion_p50_ns",
    "completion_p99_ns", "completion_p999_ns", "completion_max_ns", "uncorrected_p50_ns",
    "uncorrected_p99_ns", "queue_wait_p50_ns", "queue_wait_p99_ns",
    "queue_wait_uncorrected_p99_ns", "service_p50_ns", "service_p99_ns", "shares",
    "utilisation", "held_max", "member_idle_with_backlog_s", "status", "partial", "limit",
    "reasons",
)


def render_csv(runs: Sequence[tuple[Path | str, RunResult]]) -> str:
    """CSV of task runs with raw numbers; a run's members' figures space-separated (groups
    one after another)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADERS)
    for p, res in runs:
        r = TaskRow.from_result(p, res)
        ms = member_rows(p, res)
        w.writerow([csv_cell(v) for v in (
            r.name, r.target, r.variant, r.producers, r.workers,
            "max" if r.rate is None else r.rate, r.tasks_per_s, r.tasks_per_cpu_s,
            r.submitted, r.completed, r.lost, r.duplicated, r.redelivered, r.orphaned, r.jain,
            r.max_min, r.recovery_s, r.idle_with_backlog_s, *r.completion, *r.uncorrected,
            *r.queue_wait, *r.service, [m.tasks for m in ms],
            [csv_cell(m.utilisation) for m in ms], [csv_cell(m.held_max) for m in ms],
            [csv_cell(m.idle_with_backlog_s) for m in ms] if any(
                m.idle_with_backlog_s is not None for m in ms) else None,
            r.status, r.partial, r.limit, "; ".join(r.reasons),
        )])
    return buf.getvalue()

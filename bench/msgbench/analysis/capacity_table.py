"""Tables of capacity results: one row per search, and the steps of each (its curve).

Like :mod:`msgbench.analysis.report`, rows hold raw numbers and each format decides how to
print them; CSV has one line per step with the search's figures repeated, so a spreadsheet
can redraw every curve.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from msgbench.analysis.curves import design
from msgbench.analysis.report import expand_paths, html_table, render_plain_table
from msgbench.analysis.units import format_count, format_ns
from msgbench.results.capacity import (
    STOP_CEILING,
    STOP_CONVERGED,
    CapacityResult,
    Step,
    is_capacity,
    load_capacity,
)
from msgbench.results.model import ResultError, RunResult, load

HEADERS = ("design", "pubs x subs", "size", "capacity msgs/s", "deliveries/s", "MB/s",
           "msgs/CPU-s", "p50 at 50 %", "p99 at 50 %", "limit", "search")
NUMERIC = frozenset(range(3, 9))
STEP_HEADERS = ("design", "step", "offered msgs/s", "deliveries/s", "p50", "p99", "p99.9",
                "publish delay p99", "lost", "msgs/CPU-s", "verdict")
STEP_NUMERIC = frozenset(range(2, 10))
CSV_HEADERS = ("file", "design", "pubs", "subs", "size", "slo_p99_ns", "capacity_msgs_per_s",
               "stopped", "phase", "rate_per_pub", "offered", "deliveries_per_s", "mb_per_s",
               "msgs_per_cpu_s", "p50_ns", "p99_ns", "p999_ns", "publish_delay_p99_ns", "lost",
               "passed", "why", "limit")
LIMIT_CHARS = 100


def load_documents(specs: Iterable[str]) -> tuple[list[tuple[Path, RunResult]],
                                                   list[tuple[Path, CapacityResult]]]:
    """Run results and capacity results named by ``specs`` (files, directories, globs), each
    in order; raises :class:`ResultError` with one line on any bad file."""
    runs, caps = [], []
    for path in expand_paths(specs):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None  # let the run loader say what is wrong with it
        if is_capacity(data):
            caps.append((path, load_capacity(path)))
        else:
            runs.append((path, load(path)))
    return runs, caps


@dataclass(frozen=True)
class CapacityRow:
    """One capacity search, for people."""

    name: str
    design: str
    pubs: int
    subs: int
    size: int
    capacity: float | None
    deliveries_per_s: float | None
    mb_per_s: float | None
    msgs_per_cpu_s: float | None
    half_p50_ns: int | None
    half_p99_ns: int | None
    limit: str
    stopped: str
    steps: int

    @classmethod
    def from_result(cls, path: Path | str, cap: CapacityResult) -> CapacityRow:
        """The row of a capacity document."""
        w, at, half = cap.workload, cap.step_at_capacity(), cap.half_step()
        return cls(
            name=Path(path).name, design=design(cap), pubs=int(w["pubs"]), subs=int(w["subs"]),
            size=int(w["size"]), capacity=cap.capacity_offered,
            deliveries_per_s=at.deliveries_per_s if at else None,
            mb_per_s=at.mb_per_s if at else None,
            msgs_per_cpu_s=at.msgs_per_cpu_s if at else None,
            half_p50_ns=half.p50_ns if half else None, half_p99_ns=half.p99_ns if half else None,
            limit=cap.limit, stopped=cap.stopped, steps=len(cap.steps),
        )

    @property
    def degraded(self) -> bool:
        """No capacity, or only a lower bound (budget ran out, interrupted, floor)."""
        return self.capacity is None or self.stopped not in (STOP_CONVERGED, STOP_CEILING)


def _opt(value: float | None, fmt: Callable[[float], str]) -> str:
    return "-" if value is None else fmt(value)


def _cut(text: str) -> str:
    return text if len(text) <= LIMIT_CHARS else text[: LIMIT_CHARS - 3] + "..."


def cells(row: CapacityRow) -> list[str]:
    """The row formatted for people, in :data:`HEADERS` order."""
    bound = "" if not row.degraded or row.capacity is None else ">= "
    return [
        row.design, f"{row.pubs} x {row.subs}", f"{row.size} B",
        bound + _opt(row.capacity, format_count), _opt(row.deliveries_per_s, format_count),
        _opt(row.mb_per_s, lambda v: f"{v:.1f}"), _opt(row.msgs_per_cpu_s, format_count),
        _opt(row.half_p50_ns, format_ns), _opt(row.half_p99_ns, format_ns), _cut(row.limit),
        f"{row.stopped}, {row.steps} steps",
    ]


def step_cells(name: str, step: Step) -> list[str]:
    """One step formatted for people, in :data:`STEP_HEADERS` order."""
    verdict = "pass" if step.passed else f"FAIL: {_cut(step.why)}"
    return [
        name, step.phase, format_count(step.offered), _opt(step.deliveries_per_s, format_count),
        _opt(step.p50_ns, format_ns), _opt(step.p99_ns, format_ns), _opt(step.p999_ns, format_ns),
        _opt(step.publish_delay_p99_ns, format_ns), _opt(step.lost, lambda v: f"{v:,}"),
        _opt(step.msgs_per_cpu_s, format_count), verdict,
    ]


def _step_rows(caps: Sequence[tuple[Path, CapacityResult]]) -> list[tuple[list[str], bool]]:
    return [(step_cells(design(c), s), s.passed) for _, c in caps for s in c.curve()]


def render_capacity(caps: Sequence[tuple[Path, CapacityResult]], fmt: str,
                    title: str = "msgbench capacity") -> str:
    """The capacity table and the steps table in ``fmt`` (text, md, csv; for html see
    :func:`capacity_html`)."""
    rows = [CapacityRow.from_result(p, c) for p, c in caps]
    if fmt == "csv":
        return render_csv(caps)
    if fmt == "html":
        return "".join(capacity_html(caps))
    tables = [(title, HEADERS, NUMERIC, [cells(r) for r in rows]),
              ("steps (the latency-throughput curves)", STEP_HEADERS, STEP_NUMERIC,
               [c for c, _ in _step_rows(caps)])]
    if fmt == "text":
        return "\n".join(render_plain_table(h, num, body, t) for t, h, num, body in tables)
    if fmt == "md":
        return "\n".join(md_table(h, num, body) for _, h, num, body in tables)
    raise ValueError(f"unknown format {fmt!r}")


def md_table(headers: Sequence[str], numeric: frozenset[int], body: Sequence[list[str]]) -> str:
    """A GitHub Markdown table; ``numeric`` columns right-aligned."""
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---:" if i in numeric else "---" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def capacity_html(caps: Sequence[tuple[Path, CapacityResult]]) -> list[str]:
    """The two tables as HTML fragments (degraded searches and failed steps marked)."""
    rows = [CapacityRow.from_result(p, c) for p, c in caps]
    summary = html_table(HEADERS, NUMERIC, [cells(r) for r in rows],
                         ["degraded" if r.degraded else "ok" for r in rows])
    steps = _step_rows(caps)
    detail = html_table(STEP_HEADERS, STEP_NUMERIC, [c for c, _ in steps],
                        ["ok" if ok else "degraded" for _, ok in steps])
    return [f"<h2>Capacity</h2>{summary}", f"<h2>Steps (the curves)</h2>{detail}"]


def render_csv(caps: Sequence[tuple[Path, CapacityResult]]) -> str:
    """One line per step, raw numbers (rates per second, latencies in ns)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADERS)
    for path, c in caps:
        wl = c.workload
        for s in c.steps:
            w.writerow([
                Path(path).name, design(c), wl["pubs"], wl["subs"], wl["size"],
                c.criteria.slo_p99_ns, "" if c.capacity_offered is None else c.capacity_offered,
                c.stopped, s.phase, s.rate, s.offered,
                *("" if v is None else v for v in (
                    s.deliveries_per_s, s.mb_per_s, s.msgs_per_cpu_s, s.p50_ns, s.p99_ns,
                    s.p999_ns, s.publish_delay_p99_ns, s.lost)),
                s.passed, s.why, s.limit,
            ])
    return buf.getvalue()


__all__ = ["CapacityRow", "ResultError", "load_documents", "render_capacity"]

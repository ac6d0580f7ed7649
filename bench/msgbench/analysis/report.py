"""One table across runs, from result files: text, Markdown, CSV or HTML.

Rows hold raw numbers; each format decides how to print them (CSV keeps the
raw values so a spreadsheet can compute with them, the others are for people).
A row may also stand for a run that left no result file (a sweep cell that
could not start): its numbers are then empty and its status says why.
"""

from __future__ import annotations

import csv
import glob
import html
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from msgbench.analysis.labels import format_rate, variant
from msgbench.analysis.sections import Section, md_table
from msgbench.analysis.units import format_count, format_ns
from msgbench.results.model import ResultError, RunResult, load

FORMATS = ("text", "md", "csv", "html")
TEXT_WIDTH = 200
REASON_CHARS = 60
"""Text and Markdown tables cut the first reason to this length; CSV keeps all."""
_GLOB_CHARS = frozenset("*?[")


def expand_paths(specs: Iterable[str]) -> list[Path]:
    """Result files named by ``specs``: files, directories (their ``*.json``) or globs.

    Raises :class:`ResultError` when a spec names nothing, so a typo never
    turns into an empty comparison.
    """
    out: list[Path] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            found = sorted(p.glob("*.json"))
        elif _GLOB_CHARS & set(spec):
            found = sorted(Path(f) for f in glob.glob(spec) if Path(f).is_file())
        else:
            found = [p]
        if not found:
            raise ResultError(f"no result files in {spec}")
        out.extend(found)
    return out


def load_all(specs: Iterable[str]) -> list[tuple[Path, RunResult]]:
    """Load every result file named by ``specs`` (see :func:`expand_paths`), in order."""
    return [(p, load(p)) for p in expand_paths(specs)]


@dataclass(frozen=True)
class Row:
    """One line of the table: a run, or a run that produced no result."""

    name: str
    target: str
    variant: str
    pubs: int
    subs: int
    size: int
    rate: float | None
    status: str
    reasons: tuple[str, ...] = ()
    deliveries_per_s: float | None = None
    mb_per_s: float | None = None
    msgs_per_cpu_s: float | None = None
    p50_ns: int | None = None
    p99_ns: int | None = None
    p999_ns: int | None = None
    max_ns: int | None = None
    lost: int | None = None
    partial: bool = False
    limit: str = ""
    """The run's first limit (:mod:`msgbench.results.limits`); empty when none was found."""

    @classmethod
    def from_result(cls, path: Path | str, r: RunResult) -> Row:
        """The row of a result document."""
        cfg, s, lat = r.config, r.summary, r.summary.latency_ns
        return cls(
            name=Path(path).name,
            target=cfg["target"],
            variant=variant(cfg),
            pubs=cfg["pubs"],
            subs=cfg["subs"],
            size=cfg["size"],
            rate=cfg["rate"],
            status=r.status,
            reasons=tuple(r.reasons),
            deliveries_per_s=s.deliveries_per_s,
            mb_per_s=s.mb_per_s,
            msgs_per_cpu_s=s.msgs_per_cpu_s,
            p50_ns=int(lat["p50"]) if lat.get("count") else None,
            p99_ns=int(lat["p99"]) if lat.get("count") else None,
            p999_ns=int(lat["p999"]) if lat.get("count") else None,
            max_ns=int(lat["max"]) if lat.get("count") else None,
            lost=s.counters.lost,
            partial=r.partial,
            limit=r.limits[0] if r.limits else "",
        )

    def limit_text(self) -> str:
        """The first limit, cut to :data:`REASON_CHARS`; ``-`` when none was found."""
        if not self.limit:
            return "-"
        if len(self.limit) > REASON_CHARS:
            return self.limit[: REASON_CHARS - 3] + "..."
        return self.limit

    def status_text(self) -> str:
        """Status, ``(partial)``, and the first reason cut short."""
        text = self.status + (" (partial)" if self.partial else "")
        if self.reasons and self.status != "ok":
            first = self.reasons[0]
            if len(first) > REASON_CHARS:
                first = first[: REASON_CHARS - 3] + "..."
            more = f" (+{len(self.reasons) - 1})" if len(self.reasons) > 1 else ""
            text += f": {first}{more}"
        return text


HEADERS = (
    "target", "variant", "pubs x subs", "size", "rate", "deliveries/s", "MB/s",
    "msgs/CPU-s", "p50", "p99", "p99.9", "max", "lost", "status", "limit",
)
CSV_HEADERS = (
    "file", "target", "variant", "pubs", "subs", "size", "rate", "deliveries_per_s",
    "mb_per_s", "msgs_per_cpu_s", "p50_ns", "p99_ns", "p999_ns", "max_ns", "lost",
    "status", "partial", "limit", "reasons",
)
_NUMERIC = frozenset(range(2, 13))
"""Columns of HEADERS that are right-aligned."""


def _opt(value: float | None, fmt: Any) -> str:
    return "-" if value is None else str(fmt(value))


def cells(row: Row) -> list[str]:
    """The row formatted for people, in :data:`HEADERS` order."""
    return [
        row.target,
        row.variant,
        f"{row.pubs} x {row.subs}",
        f"{row.size} B",
        format_rate(row.rate),
        _opt(row.deliveries_per_s, format_count),
        _opt(row.mb_per_s, lambda v: f"{v:.1f}"),
        _opt(row.msgs_per_cpu_s, format_count),
        _opt(row.p50_ns, format_ns),
        _opt(row.p99_ns, format_ns),
        _opt(row.p999_ns, format_ns),
        _opt(row.max_ns, format_ns),
        _opt(row.lost, lambda v: f"{v:,}"),
        row.status_text(),
        row.limit_text(),
    ]


def render_plain_table(headers: Sequence[str], numeric: frozenset[int],
                       body: Sequence[Sequence[str]], title: str | None = None) -> str:
    """A plain-text table (no colour), ``numeric`` columns right-aligned, ending in a
    newline."""
    t = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for i, h in enumerate(headers):
        # Figures never wrap (half a number on the next line misreads); words fold instead.
        t.add_column(h, justify="right" if i in numeric else "left", overflow="fold",
                     no_wrap=i in numeric)
    for row in body:
        t.add_row(*row)
    buf = io.StringIO()
    Console(file=buf, width=TEXT_WIDTH, no_color=True, highlight=False).print(t)
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"


def render_text(rows: Sequence[Row], title: str | None = None) -> str:
    """A plain-text table (no colour), as a string ending in a newline."""
    return render_plain_table(HEADERS, _NUMERIC, [cells(r) for r in rows], title)


def render_md(rows: Sequence[Row]) -> str:
    """A GitHub Markdown table."""
    return md_table(HEADERS, _NUMERIC, [cells(r) for r in rows])


def render_csv(rows: Sequence[Row]) -> str:
    """CSV with raw numbers (rates per second, latencies in ns) and every reason."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADERS)
    for r in rows:
        w.writerow([
            r.name, r.target, r.variant, r.pubs, r.subs, r.size,
            "max" if r.rate is None else r.rate,
            *("" if v is None else v for v in (
                r.deliveries_per_s, r.mb_per_s, r.msgs_per_cpu_s,
                r.p50_ns, r.p99_ns, r.p999_ns, r.max_ns, r.lost,
            )),
            r.status, r.partial, r.limit, "; ".join(r.reasons),
        ])
    return buf.getvalue()


PAGE_CSS = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}"
    ".scroll{overflow-x:auto;margin-bottom:1.5em}"
    "table{border-collapse:collapse;font-size:14px}"
    "th,td{border:1px solid #ccc;padding:3px 8px;white-space:nowrap}"
    "th{background:#f3f3f3;text-align:left}th.num{text-align:right}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}"
    "tr.degraded{background:#fff3c4}tr.failed,tr.error{background:#fde2e2}"
    "tr.degraded td:first-child,tr.failed td:first-child,tr.error td:first-child"
    "{border-left:4px solid #d08c00;font-weight:600}"
    "tr.failed td:first-child,tr.error td:first-child{border-left-color:#c62828}"
    ".legend{font-size:13px;color:#555}"
    "figure{margin:1em 0}img{max-width:100%;height:auto;border:1px solid #eee}"
)
"""Readable as a page: cells never wrap (the table scrolls instead), numbers right-aligned
in tabular figures, degraded / failed rows tinted and marked at the left edge."""
LEGEND = ("Rows tinted yellow and marked at the left edge are degraded (something lost, "
          "duplicated, reordered, or a subscriber disconnected; for a capacity search: no "
          "capacity, or only a lower bound); red ones failed. Their figures are not a fair "
          "comparison.")


def html_table(headers: Sequence[str], numeric: frozenset[int],
               body: Sequence[Sequence[str]], row_classes: Sequence[str]) -> str:
    """An HTML table in a horizontally scrolling box; each row gets its class (``ok``,
    ``degraded``, ``failed``, ``error``)."""
    esc = html.escape
    head = "".join(f'<th class="{"num" if i in numeric else ""}">{esc(h)}</th>'
                   for i, h in enumerate(headers))
    trs = []
    for row, cls in zip(body, row_classes, strict=True):
        tds = "".join(f'<td class="{"num" if i in numeric else ""}">{esc(c)}</td>'
                      for i, c in enumerate(row))
        trs.append(f'<tr class="{esc(cls)}">{tds}</tr>')
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(trs)}</tbody></table></div>")


def render_html(rows: Sequence[Row], images: Sequence[tuple[str, str]], title: str,
                sections: Sequence[str] = ()) -> str:
    """One self-contained HTML page: the table (if any rows), then ``sections`` (HTML
    fragments, e.g. capacity tables), then ``images`` as (caption, base64 PNG)."""
    esc = html.escape
    table = (html_table(HEADERS, _NUMERIC, [cells(r) for r in rows], [r.status for r in rows])
             if rows else "")
    figs = "".join(
        f'<figure><img alt="{esc(cap)}" src="data:image/png;base64,{b64}">'
        f"<figcaption>{esc(cap)}</figcaption></figure>"
        for cap, b64 in images
    )
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{PAGE_CSS}</style></head><body>"
        f'<h1>{esc(title)}</h1><p class="legend">{esc(LEGEND)}</p>{table}'
        f"{''.join(sections)}{figs}</body></html>\n"
    )


def render(rows: Sequence[Row], fmt: str, title: str = "msgbench results") -> str:
    """Render ``rows`` in ``fmt`` (one of :data:`FORMATS`; html without plots here)."""
    if fmt == "text":
        return render_text(rows, title)
    if fmt == "md":
        return render_md(rows)
    if fmt == "csv":
        return render_csv(rows)
    if fmt == "html":
        return render_html(rows, (), title)
    raise ValueError(f"unknown format {fmt!r}")


# --- runs of every pattern -------------------------------------------------------------

PATTERNS = ("broadcast", "tasks", "rpc")
"""Patterns in the order their tables come; each has its own columns."""
Runs = Sequence[tuple[Path, RunResult]]


def pattern_of(r: RunResult) -> str:
    """The run's pattern (files from before patterns existed are ``broadcast``)."""
    return str(r.config.get("pattern") or "broadcast")


def by_pattern(runs: Runs) -> dict[str, list[tuple[Path, RunResult]]]:
    """``runs`` split by pattern, in :data:`PATTERNS` order (unknown patterns last), each
    keeping the given order."""
    out: dict[str, list[tuple[Path, RunResult]]] = {}
    for p, r in runs:
        out.setdefault(pattern_of(r), []).append((p, r))
    order = {name: i for i, name in enumerate(PATTERNS)}
    return dict(sorted(out.items(), key=lambda kv: order.get(kv[0], len(order))))


def pattern_sections(pattern: str, runs: Runs) -> list[Section]:
    """The tables of one pattern's task or request/reply runs (none for broadcast)."""
    if pattern == "tasks":
        from msgbench.analysis import task_report

        return task_report.sections(runs, REASON_CHARS)
    if pattern == "rpc":
        from msgbench.analysis import rpc_report

        return rpc_report.sections(runs, REASON_CHARS)
    return []


def section_html(s: Section) -> str:
    """A section as a heading and an HTML table."""
    return f"<h2>{html.escape(s.title)}</h2>" + html_table(s.headers, s.numeric, s.body,
                                                            s.row_classes)


def split_rows(runs: Runs) -> tuple[list[Row], list[Section]]:
    """The broadcast table's rows (runs of other patterns never go there: their columns
    would be wrong) and the other patterns' tables."""
    rows, sections = [], []
    for pattern, these in by_pattern(runs).items():
        if pattern in ("tasks", "rpc"):
            sections += pattern_sections(pattern, these)
        else:
            rows += [Row.from_result(p, r) for p, r in these]
    return rows, sections


def render_csv_runs(runs: Runs) -> str:
    """CSV of runs of one pattern, in that pattern's columns.

    Raises :class:`ResultError` for runs of several patterns: one CSV has one header.
    """
    groups = by_pattern(runs)
    if len(groups) > 1:
        counts = ", ".join(f"{k} ({len(v)} file{'s' if len(v) > 1 else ''})"
                           for k, v in groups.items())
        raise ResultError(f"-f csv takes runs of one pattern (one header each), these are "
                          f"{counts}: report them apart")
    pattern, these = next(iter(groups.items()), ("broadcast", []))
    if pattern == "tasks":
        from msgbench.analysis import task_report

        return task_report.render_csv(these)
    if pattern == "rpc":
        from msgbench.analysis import rpc_report

        return rpc_report.render_csv(these)
    return render_csv([Row.from_result(p, r) for p, r in these])


def render_runs(runs: Runs, fmt: str, title: str = "msgbench results") -> str:
    """Runs of any patterns in ``fmt`` (not html: see ``report_cmd.html_page``): broadcast
    runs in the run table, task and request/reply runs in their own tables after it.

    Raises :class:`ResultError` for ``csv`` over several patterns.
    """
    if fmt == "csv":
        return render_csv_runs(runs)
    rows, sections = split_rows(runs)
    parts = [render(rows, fmt, title)] if rows else []
    for s in sections:
        if fmt == "md":
            parts.append(f"### {s.title}\n\n" + md_table(s.headers, s.numeric, s.body))
        else:
            parts.append(render_plain_table(s.headers, s.numeric, s.body, f"{title}: {s.title}"))
    return "\n".join(parts)

"""``msgbench report``, ``plot`` and ``export``: read result files, never run anything.

Bad input (a missing, corrupt or other-version file) exits 2 with one line.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import NoReturn

import click

from msgbench.analysis.report import (
    FORMATS,
    Row,
    by_pattern,
    load_all,
    render_html,
    render_runs,
    section_html,
    split_rows,
)
from msgbench.results.capacity import CapacityResult
from msgbench.results.model import ResultError, RunResult

EXIT_USAGE = 2


def fail(message: str) -> NoReturn:
    """One line on stderr, exit 2."""
    click.echo(f"msgbench: error: {message}", err=True)
    sys.exit(EXIT_USAGE)


def _load(files: tuple[str, ...]) -> list[tuple[Path, RunResult]]:
    try:
        return load_all(files)
    except ResultError as exc:
        fail(str(exc))


Documents = tuple[list[tuple[Path, RunResult]], list[tuple[Path, CapacityResult]]]


def _load_documents(files: tuple[str, ...]) -> Documents:
    """Run results and capacity results, apart."""
    from msgbench.analysis.capacity_table import load_documents

    try:
        return load_documents(files)
    except ResultError as exc:
        fail(str(exc))


def _write(text: str, out: str | None) -> None:
    if out is None:
        sys.stdout.write(text)
        return
    try:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")


PLOT_CAPTIONS = {
    "broadcast": "latency spectrum, deliveries over time, fan-out",
    "tasks": "task runs: completion spectrum, tasks completed over time; per run: submitted, "
             "completed and backlog per second, members' shares and utilisation, queue wait, "
             "service and completion distributions",
    "rpc": "request/reply runs: round-trip spectrum, requests over time; per run: round trip "
           "from intended and actual send, and its legs",
}


def pattern_png(pattern: str, runs: list[tuple[Path, RunResult]]) -> bytes:
    """The plot of one pattern's runs as PNG data."""
    named = [(str(p), r) for p, r in runs]
    if pattern in ("tasks", "rpc"):
        from msgbench.analysis import pattern_plot

        return pattern_plot.png_bytes(pattern, named)
    from msgbench.analysis.plot import png_bytes

    return png_bytes(named)


def html_page(runs: list[tuple[Path, RunResult]], rows: list[Row], title: str,
              caps: list[tuple[Path, CapacityResult]] | None = None) -> str:
    """The self-contained HTML report: the tables and the plots as base64 PNGs.

    ``rows`` go into the run table; task and request/reply runs among ``runs`` also get
    their own tables, and each pattern its own plot.
    """
    images, sections = [], []
    _, extra = split_rows(runs)
    sections += [section_html(s) for s in extra]
    for pattern, these in by_pattern(runs).items():
        images.append((PLOT_CAPTIONS.get(pattern, pattern),
                       base64.b64encode(pattern_png(pattern, these)).decode("ascii")))
    if caps:
        from msgbench.analysis.capacity_table import capacity_html
        from msgbench.analysis.curves import curve_png

        sections += capacity_html(caps)
        png = curve_png([(str(p), c) for p, c in caps])
        images.append(("latency against delivered rate (capacity searches)",
                       base64.b64encode(png).decode("ascii")))
    return render_html(rows, images, title, sections)


@click.command("report")
@click.argument("files", nargs=-1, required=True)
@click.option("--format", "-f", "fmt", type=click.Choice(FORMATS), default="text",
              show_default=True, help="Table format; html embeds the plots.")
@click.option("--output", "-o", "out", default=None, help="Write here instead of stdout.")
@click.option("--title", default="msgbench results", show_default=True)
def report(files: tuple[str, ...], fmt: str, out: str | None, title: str) -> None:
    """One table across runs. FILES are result files, directories or globs.

    Task runs (--pattern tasks) and request/reply runs (--pattern rpc) get their own
    tables after the broadcast one: throughput and the ledger, latency, and per member
    (tasks) or per responder (rpc). -f csv takes runs of one pattern.

    Capacity results (`msgbench capacity`) get their own tables: one row per search, and
    its steps (the latency-throughput curve).
    """
    runs, caps = _load_documents(files)
    if fmt == "html":
        _write(html_page(runs, split_rows(runs)[0], title, caps), out)
        return
    if fmt == "csv" and runs and caps:
        fail("-f csv takes run results or capacity results, not both")
    try:
        parts = [render_runs(runs, fmt, title)] if runs else []
    except ResultError as exc:
        fail(str(exc))
    if caps:
        from msgbench.analysis.capacity_table import render_capacity

        parts.append(render_capacity(caps, fmt, title if not runs else "capacity"))
    _write("\n".join(parts), out)


def plot_paths(patterns: list[str], out: Path) -> dict[str, Path]:
    """Where each pattern's plot goes: one pattern to OUT; several: the first of them
    (broadcast, tasks, rpc in that order) to OUT, the others to OUT's name + ``-tasks`` /
    ``-rpc``."""
    suffix = out.suffix or ".png"
    return {p: out if i == 0 else out.with_name(f"{out.stem}-{p}{suffix}")
            for i, p in enumerate(patterns)}


@click.command("plot")
@click.argument("files", nargs=-1, required=True)
@click.option("--output", "-o", "out", required=True, help="PNG file to write.")
def plot(files: tuple[str, ...], out: str) -> None:
    """Latency spectrum, deliveries/s over time and, for sweeps, CPU per delivery and p99
    against subscribers; for capacity results, p50 and p99 against delivered rate (the
    latency-throughput curve). Given both kinds, the curves go to OUT's name + `-curves`.

    Task runs: completion spectrum and tasks/s over time, and per run the per-second
    submitted / completed / backlog (and queue depth), members' shares and utilisation,
    queue wait, service and completion distributions. Request/reply runs: round-trip
    spectrum and requests/s over time, and per run the round trip from intended vs actual
    send and its three legs. Runs of several patterns: the first pattern to OUT, the others
    to OUT's name + `-tasks` / `-rpc`."""
    runs, caps = _load_documents(files)
    written = []
    try:
        groups = by_pattern(runs)
        for pattern, path in plot_paths(list(groups), Path(out)).items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(pattern_png(pattern, groups[pattern]))
            written.append(path)
        if caps:
            from msgbench.analysis.curves import write_curve_png

            target = Path(out)
            if runs:
                target = target.with_name(f"{target.stem}-curves{target.suffix or '.png'}")
            written.append(write_curve_png([(str(p), c) for p, c in caps], target))
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")
    for path in written:
        click.echo(str(path), err=True)


EXPORTABLE = ("latency", "latency_uncorrected", "publish_delay", "task_queue_wait",
              "task_queue_wait_uncorrected", "task_service", "rpc_request_leg", "rpc_service",
              "rpc_reply_leg")
"""Histograms a result file may hold (the task and rpc ones only in those runs' files)."""


@click.command("export")
@click.argument("file")
@click.option("--hgrm", default=None, help="Write the percentile distribution (.hgrm) here.")
@click.option("--hlog", default=None, help="Write the interval log (.hlog) here.")
@click.option("--unit", type=click.Choice(["ns", "us", "ms", "s"]), default="us",
              show_default=True, help="Unit of the .hgrm values (the .hlog follows "
              "HdrHistogram: nanosecond values, interval max in ms).")
@click.option("--histogram", type=click.Choice(EXPORTABLE), default="latency",
              show_default=True, help="Which histogram goes into the .hgrm: task runs also "
              "hold task_queue_wait(_uncorrected) and task_service, rpc runs their legs.")
def export(file: str, hgrm: str | None, hlog: str | None, unit: str, histogram: str) -> None:
    """Write a run's latency in HdrHistogram's interchange formats."""
    from msgbench.analysis.export import has_interval_histograms, write_hgrm, write_hlog

    if not hgrm and not hlog:
        fail("nothing to do: give --hgrm FILE and/or --hlog FILE")
    runs = _load((file,))
    if len(runs) != 1:
        fail(f"export takes one result file, {file} names {len(runs)}")
    _, result = runs[0]
    if hgrm and histogram not in result.histograms:
        fail(f"{file} holds no {histogram} histogram (it has "
             f"{', '.join(sorted(result.histograms)) or 'none'})")
    try:
        if hgrm:
            write_hgrm(result, Path(hgrm), unit, histogram)
            click.echo(hgrm, err=True)
        if hlog:
            write_hlog(result, Path(hlog))
            note = "" if has_interval_histograms(result) else (
                " (no per-second histograms in this file: one interval with the total)")
            click.echo(f"{hlog}{note}", err=True)
    except OSError as exc:
        fail(f"cannot write: {exc.strerror or exc}")

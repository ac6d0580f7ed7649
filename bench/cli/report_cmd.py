"""``msgbench report``, ``plot`` and ``export``: read result files, never run anything.

Bad input (a missing, corrupt or other-version file) exits 2 with one line.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import NoReturn

import click

from msgbench.analysis.report import FORMATS, Row, load_all, render, render_html
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


def html_page(runs: list[tuple[Path, RunResult]], rows: list[Row], title: str,
              caps: list[tuple[Path, CapacityResult]] | None = None) -> str:
    """The self-contained HTML report: the tables and the plots as base64 PNGs."""
    images, sections = [], []
    if runs:
        from msgbench.analysis.plot import png_bytes

        png = png_bytes([(str(p), r) for p, r in runs])
        images.append(("latency spectrum, deliveries over time, fan-out",
                       base64.b64encode(png).decode("ascii")))
    if caps:
        from msgbench.analysis.capacity_table import capacity_html
        from msgbench.analysis.curves import curve_png

        sections = capacity_html(caps)
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

    Capacity results (`msgbench capacity`) get their own tables: one row per search, and
    its steps (the latency-throughput curve).
    """
    runs, caps = _load_documents(files)
    rows = [Row.from_result(p, r) for p, r in runs]
    if fmt == "html":
        _write(html_page(runs, rows, title, caps), out)
        return
    if fmt == "csv" and runs and caps:
        fail("-f csv takes run results or capacity results, not both")
    parts = [render(rows, fmt, title)] if runs else []
    if caps:
        from msgbench.analysis.capacity_table import render_capacity

        parts.append(render_capacity(caps, fmt, title if not runs else "capacity"))
    _write("\n".join(parts), out)


@click.command("plot")
@click.argument("files", nargs=-1, required=True)
@click.option("--output", "-o", "out", required=True, help="PNG file to write.")
def plot(files: tuple[str, ...], out: str) -> None:
    """Latency spectrum, deliveries/s over time and, for sweeps, CPU per delivery and p99
    against subscribers; for capacity results, p50 and p99 against delivered rate (the
    latency-throughput curve). Given both kinds, the curves go to OUT's name + `-curves`."""
    runs, caps = _load_documents(files)
    written = []
    try:
        if runs:
            from msgbench.analysis.plot import write_png

            written.append(write_png([(str(p), r) for p, r in runs], Path(out)))
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


@click.command("export")
@click.argument("file")
@click.option("--hgrm", default=None, help="Write the percentile distribution (.hgrm) here.")
@click.option("--hlog", default=None, help="Write the interval log (.hlog) here.")
@click.option("--unit", type=click.Choice(["ns", "us", "ms", "s"]), default="us",
              show_default=True, help="Unit of the .hgrm values (the .hlog follows "
              "HdrHistogram: nanosecond values, interval max in ms).")
@click.option("--histogram", type=click.Choice(["latency", "latency_uncorrected",
                                                 "publish_delay"]),
              default="latency", show_default=True, help="Which histogram goes into the .hgrm.")
def export(file: str, hgrm: str | None, hlog: str | None, unit: str, histogram: str) -> None:
    """Write a run's latency in HdrHistogram's interchange formats."""
    from msgbench.analysis.export import has_interval_histograms, write_hgrm, write_hlog

    if not hgrm and not hlog:
        fail("nothing to do: give --hgrm FILE and/or --hlog FILE")
    runs = _load((file,))
    if len(runs) != 1:
        fail(f"export takes one result file, {file} names {len(runs)}")
    _, result = runs[0]
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

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


def _write(text: str, out: str | None) -> None:
    if out is None:
        sys.stdout.write(text)
        return
    try:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")


def html_page(runs: list[tuple[Path, RunResult]], rows: list[Row], title: str) -> str:
    """The self-contained HTML report: the table and the plots as a base64 PNG."""
    from msgbench.analysis.plot import png_bytes

    png = png_bytes([(str(p), r) for p, r in runs]) if runs else b""
    images = [("latency spectrum, deliveries over time, fan-out",
               base64.b64encode(png).decode("ascii"))] if png else []
    return render_html(rows, images, title)


@click.command("report")
@click.argument("files", nargs=-1, required=True)
@click.option("--format", "-f", "fmt", type=click.Choice(FORMATS), default="text",
              show_default=True, help="Table format; html embeds the plots.")
@click.option("--output", "-o", "out", default=None, help="Write here instead of stdout.")
@click.option("--title", default="msgbench results", show_default=True)
def report(files: tuple[str, ...], fmt: str, out: str | None, title: str) -> None:
    """One table across runs. FILES are result files, directories or globs."""
    runs = _load(files)
    rows = [Row.from_result(p, r) for p, r in runs]
    text = html_page(runs, rows, title) if fmt == "html" else render(rows, fmt, title)
    _write(text, out)


@click.command("plot")
@click.argument("files", nargs=-1, required=True)
@click.option("--output", "-o", "out", required=True, help="PNG file to write.")
def plot(files: tuple[str, ...], out: str) -> None:
    """Latency spectrum, deliveries/s over time and, for sweeps, against subscribers."""
    runs = _load(files)
    from msgbench.analysis.plot import write_png

    try:
        write_png([(str(p), r) for p, r in runs], Path(out))
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")
    click.echo(out, err=True)


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

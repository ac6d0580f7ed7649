"""HdrHistogram interchange files: ``.hgrm`` percentile tables and ``.hlog`` interval logs.

Both are written by our own formatter: the ``hdrhistogram`` package's log
writer crashes in ``output_start_time`` and drops tags, and its percentile
printer leaves the standard deviation unscaled. The layouts follow the Java
HdrHistogram (``outputPercentileDistribution`` and ``HistogramLogWriter``),
so HdrHistogram's plotters and log processors read them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from msgbench.accounting.histogram import Histogram
from msgbench.results.model import RunResult

UNITS: dict[str, float] = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
"""Nanoseconds per output unit."""
DEFAULT_UNIT = "us"
HLOG_MAX_UNIT = "ms"
"""Unit of an .hlog's Interval_Max column: HdrHistogram's writers scale nanosecond logs to ms."""
TICKS_PER_HALF_DISTANCE = 5
LOG_FORMAT_VERSION = "1.3"
LEGEND = '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"'
TAG_INTERVAL = "latency"
TAG_TOTAL = "latency-total"
"""Tag of the single fallback interval when the file has no per-second histograms."""


def _histogram(result: RunResult, name: str) -> Histogram:
    encoded = result.histograms.get(name, "")
    return Histogram.decode(encoded)


def hgrm_lines(hist: Histogram, unit: str = DEFAULT_UNIT) -> Iterator[str]:
    """The percentile distribution of ``hist``, line by line (each ends in a newline).

    Values are divided by the nanoseconds in ``unit``. An empty histogram
    gives the header and a footer with zero counts.
    """
    scale = UNITS[unit]
    h = hist.hdr
    digits = h.significant_figures
    yield f"{'Value':>12} {'Percentile':>14} {'TotalCount':>10} {'1/(1-Percentile)':>14}\n\n"
    if hist.count:
        for it in h.get_percentile_iterator(TICKS_PER_HALF_DISTANCE):
            value = it.value_iterated_to / scale
            pct = it.percentile_level_iterated_to / 100.0
            if pct < 1.0:
                yield (
                    f"{value:12.{digits}f} {pct:2.12f} {it.total_count_to_this_value:10d} "
                    f"{1.0 / (1.0 - pct):14.2f}\n"
                )
            else:
                yield f"{value:12.{digits}f} {pct:2.12f} {it.total_count_to_this_value:10d}\n"
    mean = h.get_mean_value() / scale if hist.count else 0.0
    std = h.get_stddev() / scale if hist.count else 0.0
    top = h.get_max_value() / scale if hist.count else 0.0
    yield f"#[Mean    = {mean:12.{digits}f}, StdDeviation   = {std:12.{digits}f}]\n"
    yield f"#[Max     = {top:12.{digits}f}, Total count    = {hist.count:12d}]\n"
    yield f"#[Buckets = {h.bucket_count:12d}, SubBuckets     = {h.sub_bucket_count:12d}]\n"


def write_hgrm(result: RunResult, path: Path, unit: str = DEFAULT_UNIT,
               histogram: str = "latency") -> Path:
    """Write the percentile distribution of one of the run's histograms to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        f.writelines(hgrm_lines(_histogram(result, histogram), unit))
    return path


def _epoch(started_at: str) -> float:
    try:
        return datetime.fromisoformat(started_at).timestamp()
    except ValueError:
        return 0.0


def has_interval_histograms(result: RunResult) -> bool:
    """True when the per-second series carries encoded histograms (newer result files)."""
    return any(getattr(s, "histogram", "") for s in result.series)


def hlog_lines(result: RunResult) -> Iterator[str]:
    """An HdrHistogram interval log of the run's latency, line by line.

    One ``Tag=latency`` interval per measured second when the result holds
    per-second histograms; otherwise one ``Tag=latency-total`` interval over the
    whole measurement holding the total histogram (a comment says so).
    Timestamps count seconds from ``BaseTime``, the start of the measured window
    (the run's start for older files that did not record it). Values are
    nanoseconds; ``Interval_Max`` is in milliseconds, HdrHistogram's own
    convention for nanosecond logs (its readers skip the column).
    """
    scale = UNITS[HLOG_MAX_UNIT]
    start = _epoch(result.started_at)
    base = _epoch(result.measure_started_at) if result.measure_started_at else start
    cfg = result.config
    yield (
        f"#[msgbench {cfg['target']} {cfg['pubs']}x{cfg['subs']} {cfg['size']}B: latency from "
        f"intended send, nanosecond values; Interval_Max in {HLOG_MAX_UNIT}]\n"
    )
    yield f"#[Histogram log format version {LOG_FORMAT_VERSION}]\n"
    yield f"#[StartTime: {start:.3f} (seconds since epoch), {result.started_at}]\n"
    if result.measure_started_at:
        yield (
            "#[timestamps are seconds from BaseTime, the start of the measured window "
            f"({result.measure_started_at}); the run (probe, warm-up) started at StartTime]\n"
        )
    else:
        yield (
            "#[timestamps are seconds from the start of the measured window, which this "
            "result file does not date: BaseTime is the run's start (probe, warm-up before)]\n"
        )
    yield f"#[BaseTime: {base:.3f} (seconds since epoch)]\n"
    yield LEGEND + "\n"
    if has_interval_histograms(result):
        for s in result.series:
            encoded = getattr(s, "histogram", "")
            if not encoded:
                continue  # an empty second has no histogram to log
            top = Histogram.decode(encoded).hdr.get_max_value() / scale
            yield f"Tag={TAG_INTERVAL},{float(s.second):.3f},1.000,{top:.3f},{encoded}\n"
        return
    total = result.histograms.get("latency", "")
    yield (
        "#[this result file has no per-second histograms: one interval holds the whole "
        f"measurement, tagged {TAG_TOTAL}]\n"
    )
    if total:
        top = Histogram.decode(total).hdr.get_max_value() / scale
        length = float(cfg.get("duration_s", 0.0))
        yield f"Tag={TAG_TOTAL},0.000,{length:.3f},{top:.3f},{total}\n"


def write_hlog(result: RunResult, path: Path) -> Path:
    """Write :func:`hlog_lines` to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        f.writelines(hlog_lines(result))
    return path

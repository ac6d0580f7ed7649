"""``msgbench export``: .hgrm percentile tables and .hlog interval logs HdrHistogram reads."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader
from test_report import make_result, run_inproc, write_results

from msgbench.accounting.histogram import HIGHEST_NS, LOWEST_NS, SIGNIFICANT_FIGURES, Histogram
from msgbench.analysis.export import LEGEND, TAG_INTERVAL, TAG_TOTAL
from msgbench.results.model import RunResult


def _read_hlog(path: Path) -> list[HdrHistogram]:
    reader = HistogramLogReader(str(path), HdrHistogram(LOWEST_NS, HIGHEST_NS,
                                                        SIGNIFICANT_FIGURES))
    out = []
    try:
        while (h := reader.get_next_interval_histogram()) is not None:
            out.append(h)
    finally:
        reader.close()
    return out


def _export(tmp_path: Path, result: RunResult, *args: str) -> tuple[Path, Path]:
    (src,) = write_results(tmp_path, [result])
    hgrm, hlog = tmp_path / "out.hgrm", tmp_path / "out.hlog"
    r = run_inproc("export", str(src), "--hgrm", str(hgrm), "--hlog", str(hlog), *args)
    assert r.returncode == 0, r.stderr
    return hgrm, hlog


def test_interval_log_has_one_tagged_interval_per_second(tmp_path: Path) -> None:
    result = make_result(seconds=3)
    _, hlog = _export(tmp_path, result)
    text = hlog.read_text()
    assert "#[StartTime: " in text and "#[BaseTime: " in text
    assert LEGEND in text.splitlines()
    intervals = _read_hlog(hlog)
    assert [h.get_total_count() for h in intervals] == [s.delivered for s in result.series]
    assert {h.get_tag() for h in intervals} == {TAG_INTERVAL}
    for h, s in zip(intervals, result.series, strict=True):
        assert h.get_max_value() == Histogram.decode(s.histogram).hdr.get_max_value()
    starts = [h.get_start_time_stamp() for h in intervals]
    assert starts == sorted(starts) and starts[1] - starts[0] == pytest.approx(1000.0)


def test_interval_log_dates_the_measured_window_and_gives_the_max_in_ms(tmp_path: Path) -> None:
    result = dataclasses.replace(make_result(seconds=2),
                                 measure_started_at="2026-11-25T12:00:01.500+00:00")
    _, hlog = _export(tmp_path, result, "--unit", "us")
    lines = hlog.read_text().splitlines()
    start = datetime.fromisoformat(result.started_at).timestamp()
    assert f"#[BaseTime: {start + 1.5:.3f} (seconds since epoch)]" in lines
    first = next(x for x in lines if x.startswith(f"Tag={TAG_INTERVAL},"))
    interval_max = float(first.split(",")[3])
    top_ns = Histogram.decode(result.series[0].histogram).hdr.get_max_value()
    assert interval_max == pytest.approx(top_ns / 1e6, abs=1e-3)  # ms, whatever --unit says
    (first_interval, _) = _read_hlog(hlog)
    assert first_interval.get_start_time_stamp() == pytest.approx((start + 1.5) * 1000)


def test_interval_log_falls_back_to_the_total_histogram(tmp_path: Path) -> None:
    result = make_result(seconds=2, per_second_histograms=False)
    _, hlog = _export(tmp_path, result)
    (only,) = _read_hlog(hlog)
    assert only.get_tag() == TAG_TOTAL
    assert only.get_total_count() == result.summary.counters.delivered
    assert "no per-second histograms" in hlog.read_text()


def test_percentile_distribution_in_microseconds_and_milliseconds(tmp_path: Path) -> None:
    result = make_result(seconds=1, p50_us=300.0)
    hgrm, _ = _export(tmp_path, result)
    lines = hgrm.read_text().splitlines()
    assert lines[0].split() == ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
    rows = [ln.split() for ln in lines[2:] if ln and not ln.startswith("#")]
    values = [float(r[0]) for r in rows]
    assert values == sorted(values)
    assert int(rows[-1][2]) == result.summary.counters.delivered and float(rows[-1][1]) == 1.0
    lat = result.summary.latency_ns
    assert values[-1] == pytest.approx(lat["max"] / 1e3, rel=1e-3)
    hist = Histogram.decode(result.histograms["latency"])
    total = result.summary.counters.delivered
    for r in rows[1:-1]:  # each row: a value that at least its percentile of counts reach
        assert int(r[2]) >= float(r[1]) * total - 1
        assert float(r[0]) >= hist.value_at(float(r[1]) * 100) / 1e3 * (1 - 1e-3)
    footer = [ln for ln in lines if ln.startswith("#[")]
    assert footer[1].startswith("#[Max") and f"{result.summary.counters.delivered}" in footer[1]
    hgrm_ms, _ = _export(tmp_path / "ms", result, "--unit", "ms")
    last = [ln for ln in hgrm_ms.read_text().splitlines() if ln and ln[0] != "#"][-1]
    assert float(last.split()[0]) == pytest.approx(lat["max"] / 1e6, rel=1e-3)


def test_export_without_outputs_or_with_a_bad_file_exits_2(tmp_path: Path) -> None:
    (src,) = write_results(tmp_path, [make_result(seconds=1)])
    assert run_inproc("export", str(src)).returncode == 2
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    r = run_inproc("export", str(bad), "--hgrm", str(tmp_path / "x.hgrm"))
    assert r.returncode == 2 and "not a msgbench run result" in r.stderr

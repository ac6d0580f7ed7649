"""``msgbench report``: one table across runs, in text, Markdown, CSV and HTML.

Also home of :func:`make_result`, the synthetic result documents the other
report / plot / export / compare tests build on.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from click.testing import CliRunner

from conftest import msgbench_argv
from msgbench.accounting.counters import Counters
from msgbench.accounting.histogram import PERCENTILES, Histogram
from msgbench.analysis.labels import variant
from msgbench.analysis.report import Row, expand_paths, render
from msgbench.cli.main import main
from msgbench.results.model import RunResult, SecondStats, Summary, write

LATENCY_SAMPLES = 2_000


def make_result(
    *,
    target: str = "inproc",
    subs: int = 4,
    rate: float | None = 20_000.0,
    msgs_per_cpu_s: float = 1e6,
    p50_us: float = 100.0,
    lost: int = 0,
    status: str = "ok",
    reasons: tuple[str, ...] = (),
    options: dict[str, Any] | None = None,
    seconds: int = 3,
    seed: int = 0,
    per_second_histograms: bool = True,
) -> RunResult:
    """A plausible result document with a real encoded latency histogram.

    Latencies are log-normal around ``p50_us``; the per-second series carries
    its own encoded histograms (as newer result files do) unless told not to.
    """
    rng = np.random.default_rng(seed)
    per_sec = [
        (rng.lognormal(np.log(p50_us * 1e3), 0.5, LATENCY_SAMPLES)).astype(np.int64)
        for _ in range(seconds)
    ]
    total = Histogram()
    series = []
    for k, values in enumerate(per_sec):
        h = Histogram()
        h.record_array(values)
        total.add(h)
        series.append(SecondStats(k, 1000, len(values), 0, 0, 0, h.value_at(50.0),
                                  h.value_at(99.0), int(h.hdr.get_max_value()),
                                  histogram=h.encode() if per_second_histograms else ""))
    every = np.concatenate(per_sec)
    # LatencySummary would walk the counts in pure Python for the mean: far too slow here
    lat = {"count": total.count, "min": int(every.min()), "mean": float(every.mean()),
           **{k: total.value_at(p) for k, p in PERCENTILES.items()},
           "max": int(total.hdr.get_max_value())}
    delivered = total.count
    cpu_s = delivered / msgs_per_cpu_s
    summary = Summary(
        counters=Counters(published=delivered // subs, expected=delivered + lost,
                          delivered=delivered, lost=lost),
        duration_s=float(seconds), deliveries_per_s=delivered / seconds,
        mb_per_s=delivered / seconds * 64 / 1e6, cpu_s=cpu_s, msgs_per_cpu_s=msgs_per_cpu_s,
        latency_ns=lat, latency_uncorrected_ns=lat, publish_delay_ns=lat,
    )
    config = {
        "target": target, "pubs": 1, "subs": subs, "size": 64, "rate": rate,
        "duration_s": float(seconds), "warmup_s": 0.5, "topics": 1, "procs": None, "batch": 0,
        "sub_delay_s": 0.0, "probe_timeout_s": 10.0, "drain_timeout_s": 2.0,
        "target_options": options or {},
    }
    return RunResult(
        config=config, environment={"hostname": "test", "cores": 2, "cpu_model": "test cpu"},
        status=status, reasons=list(reasons), partial=status == "failed",
        started_at="2026-11-25T12:00:00+00:00", summary=summary, processes=[], series=series,
        histograms={"latency": total.encode(), "latency_uncorrected": total.encode(),
                    "publish_delay": ""},
        subscribers=[], latency_mode="open-loop" if rate else "closed-loop",
    )


def write_results(directory: Path, results: list[RunResult]) -> list[Path]:
    """Write each result as ``rNN.json`` in ``directory``."""
    return [write(r, directory / f"r{i:02d}.json") for i, r in enumerate(results)]


@dataclass(frozen=True)
class Ran:
    """What an in-process ``msgbench`` invocation produced."""

    returncode: int
    stdout: str
    stderr: str


def run_inproc(*args: str) -> Ran:
    """Run the ``msgbench`` CLI in this process (much faster than a subprocess)."""
    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return Ran(r.exit_code, r.stdout, r.stderr)


_run = run_inproc


def test_variant_shows_options_compactly() -> None:
    cfg = make_result(target="zmq", options={"zmq_mode": "proxy", "hwm": None}).config
    assert variant(cfg) == "mode=proxy"
    assert variant({**cfg, "topics": 4, "target_options": {}}) == "topics=4"


def test_text_table_has_every_column_and_the_figures(tmp_path: Path) -> None:
    paths = write_results(tmp_path, [
        make_result(subs=4, msgs_per_cpu_s=1.5e6),
        make_result(subs=8, rate=None, lost=12, status="degraded", reasons=("12 lost",)),
    ])
    r = _run("report", str(tmp_path))
    assert r.returncode == 0, r.stderr
    for header in ("target", "pubs x subs", "deliveries/s", "MB/s", "msgs/CPU-s", "p50", "p99",
                   "p99.9", "max", "lost", "status"):
        assert header in r.stdout
    assert "1 x 4" in r.stdout and "1 x 8" in r.stdout
    assert "1.5 M" in r.stdout and "20k/s" in r.stdout and "max" in r.stdout
    assert "degraded: 12 lost" in r.stdout
    assert len(paths) == 2


def test_markdown_and_csv(tmp_path: Path) -> None:
    res = make_result(p50_us=250.0)
    write_results(tmp_path, [res])
    md = _run("report", "-f", "md", str(tmp_path / "*.json"))
    assert md.returncode == 0, md.stderr
    lines = md.stdout.strip().splitlines()
    assert lines[0].startswith("| target |") and re.match(r"^\|(---:?\|)+", lines[1])
    assert len(lines) == 3
    out = tmp_path / "t.csv"
    c = _run("report", "-f", "csv", "-o", str(out), str(tmp_path / "r00.json"))
    assert c.returncode == 0 and c.stdout == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 1
    assert int(rows[0]["p50_ns"]) == res.summary.latency_ns["p50"]
    assert float(rows[0]["msgs_per_cpu_s"]) == res.summary.msgs_per_cpu_s


def test_html_is_one_file_with_an_embedded_png(tmp_path: Path) -> None:
    write_results(tmp_path, [make_result(subs=s, seed=s) for s in (1, 4, 16)])
    out = tmp_path / "report.html"
    r = _run("report", "-f", "html", "-o", str(out), str(tmp_path))
    assert r.returncode == 0, r.stderr
    page = out.read_text()
    assert "<table>" in page and page.count("<tr class=") == 3
    m = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert m, "no embedded PNG"
    assert base64.b64decode(m.group(1)).startswith(b"\x89PNG")
    assert "http" not in page.replace("http-equiv", ""), "the page must not load anything"


def test_real_command_line(tmp_path: Path) -> None:
    write_results(tmp_path, [make_result()])
    r = subprocess.run(msgbench_argv("report", "-f", "md", str(tmp_path)), capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("| inproc |") == 1


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    doc = make_result().to_json()
    doc["schema_version"] = 99
    (tmp_path / "old.json").write_text(json.dumps(doc))
    (tmp_path / "corrupt.json").write_text("{nope")
    for args in (["report", str(tmp_path / "old.json")],
                 ["report", str(tmp_path / "corrupt.json")],
                 ["report", str(tmp_path / "missing.json")],
                 ["report", str(tmp_path / "*.nothing")]):
        r = _run(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert "schema version 99" in _run("report", str(tmp_path / "old.json")).stderr


def test_rows_render_without_results() -> None:
    row = Row(name="", target="redis", variant="", pubs=1, subs=2, size=64, rate=None,
              status="error", reasons=("redis-server not found",))
    text = render([row], "text")
    assert "error: redis-server not found" in text
    assert render([row], "csv").splitlines()[1].endswith("redis-server not found")


def test_expand_paths_keeps_order(tmp_path: Path) -> None:
    paths = write_results(tmp_path, [make_result(), make_result()])
    assert expand_paths([str(paths[1]), str(tmp_path)]) == [paths[1], *paths]

"""``msgbench plot``: spectrum from the encoded histogram, series, sweep panels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_report import make_result, run_inproc, write_results

from msgbench.accounting.histogram import Histogram
from msgbench.analysis.curves import curve_figure
from msgbench.analysis.palette import KNOWN_DESIGNS, chunks, colour, design_of
from msgbench.analysis.plot import _percentile_label, figure, spectrum, sweep_groups
from msgbench.results.capacity import (
    STOP_CONVERGED,
    CapacityResult,
    Criteria,
    Step,
    load_capacity,
    write_capacity,
)


def test_spectrum_follows_the_histogram() -> None:
    r = make_result(seconds=1, p50_us=200.0)
    encoded = r.histograms["latency"]
    hist = Histogram.decode(encoded)
    x, y = spectrum(encoded)
    assert np.all(np.diff(y) >= 0), "latency must not fall as the percentile rises"
    assert y[-1] == pytest.approx(hist.hdr.get_max_value(), rel=1e-3)
    for nines in (10.0, 100.0):  # 90 %, 99 %
        i = int(np.argmin(abs(x - nines)))
        p = (1 - 1 / x[i]) * 100
        assert y[i] == pytest.approx(hist.value_at(p), rel=0.02)
    assert spectrum("")[0].size == 0


def test_percentile_axis_labels() -> None:
    assert [_percentile_label(v) for v in (1, 10, 100, 1000, 10000)] == [
        "0%", "90%", "99%", "99.9%", "99.99%"]


def test_sweep_panels_only_for_runs_that_differ_in_subscribers() -> None:
    runs = [(f"r{s}", make_result(subs=s, seed=s, seconds=1)) for s in (1, 4, 16)]
    groups = sweep_groups(runs)
    (points,) = groups.values()
    assert [p[0] for p in points] == [1, 4, 16]
    assert len(figure(runs).axes) == 4
    assert len(figure(runs[:1]).axes) == 2


def test_plot_command_writes_a_png(tmp_path: Path) -> None:
    write_results(tmp_path / "in", [make_result(subs=s, seed=s) for s in (1, 8)])
    out = tmp_path / "plots" / "out.png"
    r = run_inproc("plot", str(tmp_path / "in"), "-o", str(out))
    assert r.returncode == 0, r.stderr
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 20_000
    assert run_inproc("plot", str(tmp_path / "nothing*.json"), "-o", str(out)).returncode == 2


def _capacity(target: str, knee: float, options: dict[str, object] | None = None,
              ) -> CapacityResult:
    """A capacity document whose steps pass up to ``knee`` msgs/s per publisher."""
    steps = []
    for rate in (knee / 4, knee / 2, knee, knee * 1.5):
        passed = rate <= knee
        steps.append(Step(rate=rate, offered=rate * 4, phase="ramp", passed=passed,
                          why="" if passed else "lost 10", status="ok" if passed else "degraded",
                          deliveries_per_s=rate * 4 * 32, mb_per_s=rate * 4 * 32 * 64 / 1e6,
                          msgs_per_cpu_s=1e6, p50_ns=int(1e5 * (1 + rate / knee)),
                          p99_ns=int(1e6 * (1 + 5 * rate / knee)), p999_ns=int(2e7),
                          publish_delay_p99_ns=10_000, lost=0 if passed else 10,
                          processes=[{"role": "worker 1", "cpu_s": 1.0, "core_share": 0.5}],
                          limit="worker 1 at 50% of a core"))
    variant_text = " ".join(f"{k}={v}" for k, v in (options or {}).items())
    return CapacityResult(
        workload={"target": target, "target_name": target, "variant": variant_text,
                  "pattern": "broadcast", "pubs": 4, "subs": 32, "size": 64, "topics": 1,
                  "duration": "1s", "warmup": "0s", "args": []},
        criteria=Criteria(slo_p99_ns=10_000_000, max_publish_delay_ns=1_000_000),
        steps=steps, capacity_rate=knee, stopped=STOP_CONVERGED, limit="worker 1",
        started_at="2026-12-02T00:00:00+00:00", elapsed_s=10.0, budget_s=60.0)


def test_one_colour_per_design_in_every_chart() -> None:
    assert colour("zmq") == colour("zmq") != colour("redis")
    assert len({colour(d) for d in KNOWN_DESIGNS}) == len(KNOWN_DESIGNS)
    assert colour("some-plugin x=1") == colour("some-plugin x=1")  # stable, not by position
    run = make_result(target="zmq", options={"zmq_mode": "proxy"})
    assert design_of(run.config) == "zmq mode=proxy"
    assert [len(c) for c in chunks(list(range(30)))] == [8, 8, 8, 6]  # at most 8 a panel
    assert chunks([]) == []


def test_latency_throughput_curves_and_small_multiples(tmp_path: Path) -> None:
    few = [(f"c{i}", _capacity(t, 1000.0 * (i + 1))) for i, t in
           enumerate(("inproc", "redis", "zmq"))]
    fig = curve_figure(few)
    assert len(fig.axes) == 2
    p99 = fig.axes[1]
    lines = [ln for ln in p99.get_lines() if ln.get_label() in ("inproc", "redis", "zmq")]
    assert {ln.get_label(): ln.get_color() for ln in lines} == {
        d: colour(d) for d in ("inproc", "redis", "zmq")}
    xs = [float(v) for v in np.asarray(lines[0].get_xdata())]
    assert xs == sorted(xs)  # the curve runs along the delivered rate
    many = [(f"c{i}", _capacity(f"plugin{i}", 1000.0 + i)) for i in range(12)]
    assert len(curve_figure(many).axes) == 4  # two rows of at most eight series
    runs = [(f"r{i}", make_result(subs=2, seed=i, seconds=1)) for i in range(10)]
    assert len(figure(runs).axes) == 4  # spectrum and time, twice


def test_capacity_results_round_trip_through_report_and_plot(tmp_path: Path) -> None:
    docs = [_capacity("inproc", 4000.0), _capacity("zmq", 1000.0, {"mode": "proxy"})]
    for i, doc in enumerate(docs):
        write_capacity(doc, tmp_path / "in" / f"cap{i}.json")
    write_results(tmp_path / "in", [make_result(subs=2)])
    text = run_inproc("report", str(tmp_path / "in"))
    assert text.returncode == 0, text.stderr
    assert "capacity msgs/s" in text.stdout and "zmq mode=proxy" in text.stdout
    assert "16 k" in text.stdout  # 4000/s per publisher x 4 publishers
    csv_out = run_inproc("report", "-f", "csv", str(tmp_path / "in" / "cap*.json"))
    assert csv_out.returncode == 0, csv_out.stderr
    assert len(csv_out.stdout.strip().splitlines()) == 1 + 2 * 4  # one line per step
    out = tmp_path / "plots" / "out.png"
    r = run_inproc("plot", str(tmp_path / "in"), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "plots" / "out-curves.png").read_bytes().startswith(b"\x89PNG")
    assert load_capacity(tmp_path / "in" / "cap0.json") == docs[0]

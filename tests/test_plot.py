"""``msgbench plot``: spectrum from the encoded histogram, series, sweep panels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_report import make_result, run_inproc, write_results

from msgbench.accounting.histogram import Histogram
from msgbench.analysis.plot import _percentile_label, figure, spectrum, sweep_groups


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

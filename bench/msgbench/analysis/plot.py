"""Plots of result files (matplotlib, Agg backend: no display needed).

- latency percentile spectrum, the usual HdrHistogram picture: x is
  1 / (1 - p) on a log axis labelled 90%, 99%, 99.9%..., computed from the
  encoded histogram in each file (never from the few stored percentiles);
- deliveries/s over time, from the per-second series;
- for sweeps (runs that differ only in the number of subscribers):
  CPU per delivery and p99 against subscribers (deliveries/s against fan-out at a
  fixed rate would be a straight line by construction).

Every design has one colour in every chart (:mod:`msgbench.analysis.palette`); runs of one
design in a panel differ by line style. More than
:data:`~msgbench.analysis.palette.MAX_SERIES_PER_PANEL` runs become small multiples.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: never try to open a window
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

from msgbench.accounting.histogram import Histogram
from msgbench.analysis.figures import png
from msgbench.analysis.labels import format_rate, variant
from msgbench.analysis.palette import chunks, colour, design_of
from msgbench.analysis.units import format_count, format_ns
from msgbench.results.model import RunResult

SPECTRUM_POINTS = 300
PANEL_SIZE_IN = (11.0, 4.2)
DPI = 100
LINESTYLES = ("-", "--", ":", "-.")
"""Runs of one design in one panel: same colour, these styles in turn."""
Runs = Sequence[tuple[str, RunResult]]
"""(name, result) pairs; the name only disambiguates identical labels."""


def _styles(runs: Runs) -> list[dict[str, Any]]:
    """Colour by design, line style by how many runs of that design came before."""
    seen: dict[str, int] = defaultdict(int)
    out = []
    for _, r in runs:
        design = design_of(r.config)
        out.append({"color": colour(design),
                    "linestyle": LINESTYLES[seen[design] % len(LINESTYLES)]})
        seen[design] += 1
    return out


def spectrum(encoded: str) -> tuple[np.ndarray, np.ndarray]:
    """Points (1 / (1 - p), latency ns) of an encoded histogram, p from 0 up to the max.

    Computed from the bucket counts in one pass (HdrHistogram's own
    ``get_value_at_percentile`` walks the whole counts array per call).
    """
    hist = Histogram.decode(encoded)
    total = hist.count
    if total == 0:
        return np.empty(0), np.empty(0)
    h = hist.hdr
    counts = np.ctypeslib.as_array(h.counts)[: h.counts_len]
    nz = np.nonzero(counts)[0]
    cum = np.cumsum(counts[nz].astype(np.float64))
    values = np.array(
        [h.get_highest_equivalent_value(h.get_value_from_index(int(i))) for i in nz], np.float64
    )
    # The last meaningful point is 1 / (1 - p) = total: the top value itself.
    x = np.logspace(0, math.log10(max(total, 2)), SPECTRUM_POINTS)
    p = 1.0 - 1.0 / x
    wanted = np.maximum(1.0, np.ceil(p * total))
    wanted[-1] = total  # end on the maximum itself
    idx = np.searchsorted(cum, wanted, side="left")
    return x, values[np.minimum(idx, len(values) - 1)]


def run_label(r: RunResult) -> str:
    """A short legend label: ``zmq mode=proxy 4x32 64B 20k/s``."""
    cfg = r.config
    v = variant(cfg)
    return (
        f"{cfg['target']}{' ' + v if v else ''} {cfg['pubs']}x{cfg['subs']} "
        f"{cfg['size']}B {format_rate(cfg['rate'])}"
    )


def run_labels(runs: Runs) -> list[str]:
    """Legend labels of ``runs``, numbered where two runs would share one."""
    labels = [run_label(r) for _, r in runs]
    seen: dict[str, int] = defaultdict(int)
    for lab in labels:
        seen[lab] += 1
    counter: dict[str, int] = defaultdict(int)
    out = []
    for lab in labels:
        counter[lab] += 1
        out.append(f"{lab} #{counter[lab]}" if seen[lab] > 1 else lab)
    return out


def _ns_formatter() -> FuncFormatter:
    return FuncFormatter(lambda v, _pos: format_ns(v) if v > 0 else "0")


def _percentile_label(x: float) -> str:
    nines = round(math.log10(x))
    if nines == 0:
        return "0%"
    return f"{100 - 10 ** (2 - nines):.{max(0, nines - 2)}f}%"


def spectrum_axes(ax: Axes, top: float, ylabel: str, title: str) -> None:
    """Percentile axis (1 / (1 - p), log, up to ``top``) and a log latency axis."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [10.0**k for k in range(0, math.ceil(math.log10(max(top, 10.0))) + 1)]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: _percentile_label(v)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(_ns_formatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("percentile")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.4)


def plot_spectrum(ax: Axes, runs: Runs, labels: Sequence[str],
                  ylabel: str = "latency (from intended send)",
                  title: str = "Latency by percentile") -> None:
    """Latency against percentile on the 1 / (1 - p) axis, one line per run."""
    top = 10.0
    for (_, r), label, style in zip(runs, labels, _styles(runs), strict=True):
        x, y = spectrum(r.histograms.get("latency", ""))
        if x.size:
            ax.plot(x, y, label=label, linewidth=1.3, **style)
            top = max(top, float(x[-1]))
    spectrum_axes(ax, top, ylabel, title)


def plot_over_time(ax: Axes, runs: Runs, labels: Sequence[str],
                   ylabel: str = "deliveries/s",
                   title: str = "Deliveries per second over time") -> None:
    """Deliveries per second, second by second."""
    for (_, r), label, style in zip(runs, labels, _styles(runs), strict=True):
        secs = [s.second + 1 for s in r.series]
        ax.plot(secs, [s.delivered for s in r.series], marker=".", label=label, linewidth=1.2,
                **style)
    ax.set_xlabel("second of the measurement")
    ax.set_ylabel(ylabel)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: format_count(v)))
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.grid(True, alpha=0.4)


def _cpu_ns_per_delivery(r: RunResult) -> float:
    rate = r.summary.msgs_per_cpu_s
    return 1e9 / rate if rate > 0 else float("nan")


def _sweep_key(cfg: dict[str, Any]) -> str:
    v = variant(cfg)
    return (f"{cfg['target']}{' ' + v if v else ''} {cfg['pubs']} pub "
            f"{cfg['size']}B {format_rate(cfg['rate'])}")


def sweep_groups(runs: Runs) -> dict[str, list[tuple[int, float, float]]]:
    """Runs grouped by everything but ``subs``: label -> sorted (subs, CPU ns per delivery,
    p99 ns).

    Only groups with at least two subscriber counts are kept; repeated trials
    of one count are reduced to their median.
    """
    groups: dict[str, dict[int, list[RunResult]]] = defaultdict(lambda: defaultdict(list))
    for _, r in runs:
        groups[_sweep_key(r.config)][int(r.config["subs"])].append(r)
    out: dict[str, list[tuple[int, float, float]]] = {}
    for key, by_subs in groups.items():
        if len(by_subs) < 2:
            continue
        out[key] = [
            (
                subs,
                float(np.median([_cpu_ns_per_delivery(r) for r in rs])),
                float(np.median([r.summary.latency_ns["p99"] for r in rs])),
            )
            for subs, rs in sorted(by_subs.items())
        ]
    return out


def plot_sweep(ax_rate: Axes, ax_p99: Axes, groups: dict[str, list[Any]],
               colours: dict[str, str] | None = None) -> None:
    """CPU per delivery and p99 against the number of subscribers, one line per group,
    coloured by ``colours[group]`` (its design's colour) when given."""
    for key, points in groups.items():
        subs = [p[0] for p in points]
        c = (colours or {}).get(key)
        ax_rate.plot(subs, [p[1] for p in points], marker="o", label=key, color=c)
        ax_p99.plot(subs, [p[2] for p in points], marker="o", label=key, color=c)
    for ax in (ax_rate, ax_p99):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
        ax.set_xlabel("subscribers")
        ax.grid(True, alpha=0.4)
    ax_rate.set_ylabel("CPU per delivery (all processes)")
    ax_rate.yaxis.set_major_formatter(_ns_formatter())
    ax_rate.set_ylim(bottom=0)
    ax_rate.set_title("CPU per delivery against fan-out")
    ax_p99.yaxis.set_major_formatter(_ns_formatter())
    ax_p99.set_ylim(bottom=0)
    ax_p99.set_ylabel("p99 latency")
    ax_p99.set_title("p99 against fan-out")
    ax_rate.legend(fontsize="small")


def figure(runs: Runs) -> Figure:
    """The whole picture: per panel of at most eight runs, the spectrum and deliveries over
    time side by side (small multiples past eight runs); then the sweep panels if any."""
    labels = run_labels(runs)
    groups = sweep_groups(runs)
    pairs = list(zip(runs, labels, strict=True))
    panels = chunks(pairs) or [[]]
    n_rows = len(panels) + (1 if groups else 0)
    fig = plt.figure(figsize=(PANEL_SIZE_IN[0] * 1.3, PANEL_SIZE_IN[1] * n_rows), dpi=DPI)
    grid = fig.add_gridspec(n_rows, 2)
    for row, panel in enumerate(panels):
        part = [run for run, _ in panel]
        names = [lab for _, lab in panel]
        ax_spec = fig.add_subplot(grid[row, 0])
        plot_spectrum(ax_spec, part, names)
        plot_over_time(fig.add_subplot(grid[row, 1]), part, names)
        if len(panels) > 1:
            ax_spec.set_title(f"Latency by percentile ({row + 1} of {len(panels)})")
        if part:
            ax_spec.legend(fontsize="x-small", loc="upper left")
    if groups:
        colours = {_sweep_key(r.config): colour(design_of(r.config)) for _, r in runs}
        plot_sweep(fig.add_subplot(grid[n_rows - 1, 0]), fig.add_subplot(grid[n_rows - 1, 1]),
                   groups, colours)
    fig.tight_layout()
    return fig


def png_bytes(runs: Runs) -> bytes:
    """The figure as PNG data."""
    return png(figure(runs))


def write_png(runs: Runs, path: Path) -> Path:
    """Write the figure to ``path`` (PNG)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(runs))
    return path

"""Latency-throughput curves of capacity results: p50 and p99 against delivered rate.

One line per capacity result, coloured by its design (the same colour in every chart), with
filled markers for the steps that passed and crosses for those that failed, the SLO drawn on
the p99 panel, and small multiples past eight series a panel.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: never try to open a window
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from msgbench.analysis.figures import png
from msgbench.analysis.palette import chunks, colour, design_name
from msgbench.analysis.units import format_count, format_ns
from msgbench.results.capacity import CapacityResult

PANEL_SIZE_IN = (7.0, 4.4)
DPI = 100
Curves = Sequence[tuple[str, CapacityResult]]
"""(name, capacity result) pairs."""


def design(cap: CapacityResult) -> str:
    """The design a capacity result measured: target and variant."""
    return design_name(str(cap.workload.get("target_name") or cap.workload["target"]).split()[0],
                       str(cap.workload.get("variant", "")))


def curve_label(cap: CapacityResult, with_workload: bool) -> str:
    """``zmq mode=proxy`` or, when the chart mixes workloads, ``zmq mode=proxy 4x32 64B``."""
    w = cap.workload
    text = design(cap)
    return f"{text} {w['pubs']}x{w['subs']} {w['size']}B" if with_workload else text


def _plot_panel(ax_p50: Axes, ax_p99: Axes, curves: Curves, mixed: bool) -> None:
    for _, cap in curves:
        points = cap.curve()
        if not points:
            continue
        c = colour(design(cap))
        label = curve_label(cap, mixed)
        for ax, key in ((ax_p50, "p50_ns"), (ax_p99, "p99_ns")):
            xs = [s.deliveries_per_s or 0.0 for s in points]
            ys = [float(getattr(s, key)) for s in points]
            ax.plot(xs, ys, color=c, linewidth=1.2, label=label)
            ok = [(x, y) for x, y, s in zip(xs, ys, points, strict=True) if s.passed]
            bad = [(x, y) for x, y, s in zip(xs, ys, points, strict=True) if not s.passed]
            if ok:
                ax.scatter([p[0] for p in ok], [p[1] for p in ok], color=c, s=18, zorder=3)
            if bad:
                ax.scatter([p[0] for p in bad], [p[1] for p in bad], color=c, marker="x", s=30,
                           zorder=3)
    slos = {cap.criteria.slo_p99_ns for _, cap in curves}
    for slo in slos:
        ax_p99.axhline(slo, color="#999999", linestyle="--", linewidth=1)
    for ax, what in ((ax_p50, "p50"), (ax_p99, "p99")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        # 1-2-5 ticks: a curve often spans less than a decade, which plain decades leave bare
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: format_count(v)))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: format_ns(v) if v > 0 else "0"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("delivered (deliveries/s)")
        ax.set_ylabel(f"{what} latency (from intended send)")
        ax.grid(True, which="major", alpha=0.4)
    ax_p50.set_title("p50 against delivered rate")
    ax_p99.set_title("p99 against delivered rate (dashed: SLO; x: step failed)")
    ax_p50.legend(fontsize="x-small", loc="upper left")


def curve_figure(curves: Curves) -> Figure:
    """p50 and p99 against delivered rate; one row of two panels per eight curves."""
    keys = {(c.workload["pubs"], c.workload["subs"], c.workload["size"]) for _, c in curves}
    panels = chunks(list(curves)) or [[]]
    fig = plt.figure(figsize=(PANEL_SIZE_IN[0] * 2, PANEL_SIZE_IN[1] * len(panels)), dpi=DPI)
    grid = fig.add_gridspec(len(panels), 2)
    for row, panel in enumerate(panels):
        _plot_panel(fig.add_subplot(grid[row, 0]), fig.add_subplot(grid[row, 1]), panel,
                    len(keys) > 1)
    fig.tight_layout()
    return fig


def curve_png(curves: Curves) -> bytes:
    """The curve figure as PNG data."""
    return png(curve_figure(curves))


def write_curve_png(curves: Curves, path: Path) -> Path:
    """Write the curve figure to ``path`` (PNG)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(curve_png(curves))
    return path

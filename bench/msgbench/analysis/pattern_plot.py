"""Plots of task and request/reply runs, in the run plot's style (one PNG).

First, across runs (small multiples past eight): the latency spectrum (completion for
tasks, the round trip for request/reply, both from the intended send) and the completed
rate over time, coloured by design as every chart is. Then one row per run:

- tasks: the per-second series (submitted, completed, backlog, and the queue's waiting /
  unacked depth when the design can tell), the members' shares and utilisation as bars
  (with seconds idle while tasks waited, when recorded), and the distributions of queue
  wait, service time and completion (with completion's uncorrected twin);
- request/reply: the round trip from the intended and from the actual send, and its three
  legs (request leg, time in the responder, reply leg).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: never try to open a window
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter

from msgbench.analysis.figures import png
from msgbench.analysis.palette import PALETTE, chunks
from msgbench.analysis.plot import (
    DPI,
    PANEL_SIZE_IN,
    Runs,
    plot_over_time,
    plot_spectrum,
    run_labels,
    spectrum,
    spectrum_axes,
)
from msgbench.analysis.rpc_report import LEG_NAMES, LEGS, loop_text
from msgbench.analysis.task_report import member_rows
from msgbench.analysis.units import format_count
from msgbench.results.model import RunResult
from msgbench.results.records import QUEUE_WAIT, SERVICE

MAX_DETAIL_RUNS = 16
"""Runs that get their own row of detail; more are named in the title as left out."""
COLUMNS = 6
"""Grid columns: the overview takes 3 + 3, a task run's row 2 + 2 + 2, an rpc run's 3 + 3."""
OVERVIEW = {
    "tasks": ("completion (from intended submit)", "Task completion by percentile",
              "tasks completed/s", "Tasks completed per second"),
    "rpc": ("round trip (from intended send)", "Round trip by percentile",
            "replies matched/s", "Requests completed per second"),
}
SERIES = (("published", "submitted"), ("delivered", "completed"), ("backlog", "backlog"),
          ("queue_waiting", "queue: waiting"), ("queue_unacked", "queue: unacked"))
"""Per-second fields of a task run and their legend names; queue depths only when present."""


def _series_values(r: RunResult, field: str) -> list[float] | None:
    """One per-second field, NaN where a second lacks it; None when no second has it."""
    values = [getattr(s, field, None) for s in r.series]
    if all(v is None for v in values):
        return None
    return [float("nan") if v is None else float(v) for v in values]


def task_series(r: RunResult) -> dict[str, list[float]]:
    """Legend name -> per-second values of the fields in :data:`SERIES` the run has."""
    out = {}
    for field, name in SERIES:
        values = _series_values(r, field)
        if values is not None:
            out[name] = values
    return out


def _spectra(ax: Axes, lines: Sequence[tuple[str, str, dict[str, Any]]], ylabel: str,
             title: str) -> int:
    """Spectrum lines (label, encoded histogram, style); returns how many were drawn."""
    top, drawn = 10.0, 0
    for label, encoded, style in lines:
        x, y = spectrum(encoded)
        if x.size:
            ax.plot(x, y, label=label, linewidth=1.3, **style)
            top, drawn = max(top, float(x[-1])), drawn + 1
    spectrum_axes(ax, top, ylabel, title)
    if drawn:
        ax.legend(fontsize="x-small", loc="upper left")
    return drawn


def plot_task_series(ax: Axes, r: RunResult, label: str) -> None:
    """Submitted, completed, backlog (and queue depths) second by second."""
    for i, (name, values) in enumerate(task_series(r).items()):
        ax.plot([s.second + 1 for s in r.series], values, marker=".", linewidth=1.2,
                label=name, color=PALETTE[i])
    ax.set_xlabel("second of the measurement")
    ax.set_ylabel("tasks in the second (backlog, queue: at its end)")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: format_count(v)))
    ax.set_ylim(bottom=0)
    ax.set_title(f"{label}: per second", fontsize="small")
    ax.grid(True, alpha=0.4)
    ax.legend(fontsize="x-small")


def plot_members(ax: Axes, path: str, r: RunResult) -> None:
    """Each member's share of its group's tasks and its utilisation, side by side."""
    members = member_rows(path, r)
    x = np.arange(len(members))
    ax.bar(x - 0.2, [m.share for m in members], 0.4, label="share of tasks", color=PALETTE[0])
    ax.bar(x + 0.2, [m.utilisation or 0.0 for m in members], 0.4, label="busy (utilisation)",
           color=PALETTE[1])
    many = len(r.groups) > 1
    names = [f"{m.group}/{m.member}" if many else f"{m.member}" for m in members]
    if any(m.idle_with_backlog_s is not None for m in members):
        names = [f"{n}\nidle {m.idle_with_backlog_s or 0:.2f} s"
                 for n, m in zip(names, members, strict=True)]
    ax.set_xticks(x, names, fontsize="x-small")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("member" + (" (idle: while its group's tasks waited)"
                              if any(m.idle_with_backlog_s is not None for m in members) else ""))
    ax.set_title("Shares and utilisation", fontsize="medium")
    ax.grid(True, axis="y", alpha=0.4)
    ax.legend(fontsize="x-small")


def plot_task_latency(ax: Axes, r: RunResult) -> None:
    """Queue wait, service and completion distributions of one task run."""
    h = r.histograms
    _spectra(ax, [
        ("queue wait", h.get(QUEUE_WAIT, ""), {"color": PALETTE[1]}),
        ("service", h.get(SERVICE, ""), {"color": PALETTE[2]}),
        ("completion", h.get("latency", ""), {"color": PALETTE[0]}),
        ("completion, uncorrected", h.get("latency_uncorrected", ""),
         {"color": PALETTE[0], "linestyle": "--"}),
    ], "latency", "Queue wait, service, completion")


def plot_round_trip(ax: Axes, r: RunResult, label: str) -> None:
    """Round trip from the intended and from the actual send."""
    h = r.histograms
    _spectra(ax, [
        ("from intended send", h.get("latency", ""), {"color": PALETTE[0]}),
        ("from actual send", h.get("latency_uncorrected", ""),
         {"color": PALETTE[0], "linestyle": "--"}),
    ], "round trip", f"{label}: round trip ({loop_text(r)})")
    ax.title.set_fontsize("small")


def plot_legs(ax: Axes, r: RunResult) -> None:
    """The three legs of the round trip."""
    _spectra(ax, [(LEG_NAMES[leg], r.histograms.get(leg, ""), {"color": PALETTE[i + 1]})
                  for i, leg in enumerate(LEGS)], "time", "Legs of the round trip")


def figure(pattern: str, runs: Runs) -> Figure:
    """The overview rows and one detail row per run (at most :data:`MAX_DETAIL_RUNS`) of
    task (``pattern`` ``tasks``) or request/reply (``rpc``) runs."""
    ylabel, title, rate_label, rate_title = OVERVIEW[pattern]
    labels = run_labels(runs)
    pairs = list(zip(runs, labels, strict=True))
    panels = chunks(pairs) or [[]]
    detail = pairs[:MAX_DETAIL_RUNS]
    n_rows = len(panels) + len(detail)
    fig = plt.figure(figsize=(PANEL_SIZE_IN[0] * 1.3, PANEL_SIZE_IN[1] * n_rows), dpi=DPI)
    grid = fig.add_gridspec(n_rows, COLUMNS)
    half = COLUMNS // 2
    for row, panel in enumerate(panels):
        part, names = [run for run, _ in panel], [lab for _, lab in panel]
        ax = fig.add_subplot(grid[row, :half])
        more = f" ({row + 1} of {len(panels)})" if len(panels) > 1 else ""
        plot_spectrum(ax, part, names, ylabel, title + more)
        if part:
            ax.legend(fontsize="x-small", loc="upper left")
        plot_over_time(fig.add_subplot(grid[row, half:]), part, names, rate_label, rate_title)
    third = COLUMNS // 3
    for i, ((path, r), label) in enumerate(detail):
        row = len(panels) + i
        if pattern == "tasks":
            plot_task_series(fig.add_subplot(grid[row, :third]), r, label)
            plot_members(fig.add_subplot(grid[row, third:2 * third]), path, r)
            plot_task_latency(fig.add_subplot(grid[row, 2 * third:]), r)
        else:
            plot_round_trip(fig.add_subplot(grid[row, :half]), r, label)
            plot_legs(fig.add_subplot(grid[row, half:]), r)
    if len(pairs) > len(detail):
        fig.suptitle(f"detail rows for the first {len(detail)} of {len(pairs)} runs")
    fig.tight_layout()
    return fig


def png_bytes(pattern: str, runs: Runs) -> bytes:
    """The figure of ``pattern``'s runs as PNG data."""
    return png(figure(pattern, runs))


def write_png(pattern: str, runs: Runs, path: Path) -> Path:
    """Write the figure of ``pattern``'s runs to ``path`` (PNG)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(pattern, runs))
    return path

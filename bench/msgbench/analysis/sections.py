"""Titled tables of one pattern's runs, rendered the way the run table is.

A :class:`Section` is what the task and request/reply reports produce: headers, the
cells for people and each row's status (for the HTML tint). The CSV twin of a
pattern's runs is built by its own module, with raw numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from msgbench.analysis.units import format_ns

Summary = Mapping[str, Any]
"""A latency summary as results hold it: count, p50, p90, p99, p999, max (ns)."""


@dataclass(frozen=True)
class Section:
    """One titled table for people."""

    title: str
    headers: tuple[str, ...]
    numeric: frozenset[int]
    """Columns right-aligned."""
    body: tuple[tuple[str, ...], ...]
    row_classes: tuple[str, ...]
    """One per row: the run's status (``ok``, ``degraded``, ``failed``) for the HTML tint."""


def pct(summary: Summary | None, key: str) -> int | None:
    """``summary[key]`` in ns, or None when the summary is absent or recorded nothing."""
    if not summary or not summary.get("count"):
        return None
    return int(summary[key])


def opt(value: Any, fmt: Callable[[Any], str]) -> str:
    """``fmt(value)``, or ``-`` for a figure the run does not have."""
    return "-" if value is None else fmt(value)


def ns(value: int | None) -> str:
    """A latency for people, ``-`` when absent."""
    return opt(value, format_ns)


def whole(value: int | None) -> str:
    """``12,345``, ``-`` when absent."""
    return opt(value, lambda v: f"{v:,}")


def ratio(value: float | None, digits: int = 2) -> str:
    """``1.03``, ``-`` when absent."""
    return opt(value, lambda v: f"{v:.{digits}f}")


def seconds(value: float | None) -> str:
    """``0.37 s``, ``-`` when absent."""
    return opt(value, lambda v: f"{v:.2f} s")


def md_table(headers: Sequence[str], numeric: frozenset[int],
             body: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table, ``numeric`` columns right-aligned."""
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |"]
    lines.append("|" + "|".join("---:" if i in numeric else "---"
                                for i in range(len(headers))) + "|")
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def csv_cell(value: Any) -> Any:
    """Raw CSV value: empty for an absent figure, lists space-separated."""
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    return value


def spread(values: Sequence[int | None]) -> str:
    """Latencies in one cell, ``130 us / 2.63 ms / 6.05 ms``; ``-`` when none was recorded."""
    if all(v is None for v in values):
        return "-"
    return " / ".join(ns(v) for v in values)

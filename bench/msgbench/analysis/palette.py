"""One colour per design, the same in every chart: a fixed palette keyed by target + variant.

The designs msgbench ships come first, in a fixed order, so their colours never move when a
chart shows fewer of them; any other design (a plugin, an unusual variant) takes a colour from
the rest of the palette by a stable hash of its name, so it too keeps its colour everywhere.
"""

from __future__ import annotations

import zlib
from typing import Any

from msgbench.analysis.labels import variant

PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#ad494a", "#637939", "#8c6d31", "#7b4173", "#3182bd",
    "#e6550d", "#31a354", "#756bb1", "#636363",
)
"""matplotlib's tab10, then darker and lighter tones from tab20b / tab20c."""
KNOWN_DESIGNS = (
    "inproc", "redis", "redis-streams", "zmq", "zmq mode=proxy", "ws",
    "ws bridge=redis servers=2", "ws bridge=zmq servers=2", "rabbitmq", "redis sharded",
)
"""Designs with a reserved colour, in :data:`PALETTE` order."""
MAX_SERIES_PER_PANEL = 8
"""More series than this in one panel and colours and legends stop being readable."""


def design_name(target: str, variant_text: str) -> str:
    """``zmq mode=proxy``: the target and its variant, as charts and palettes key designs."""
    return f"{target} {variant_text}".strip()


def design_of(config: dict[str, Any]) -> str:
    """The design of a run's config: target and the target options that set it apart
    (not the workload: the number of subscribers is not a design)."""
    options = {"target": config.get("target", ""),
               "target_options": config.get("target_options") or {}}
    return design_name(str(config.get("target", "")), variant(options))


def colour(design: str) -> str:
    """The colour of ``design`` (see :func:`design_name`), the same in every chart."""
    if design in KNOWN_DESIGNS:
        return PALETTE[KNOWN_DESIGNS.index(design)]
    rest = PALETTE[len(KNOWN_DESIGNS):]
    return rest[zlib.crc32(design.encode()) % len(rest)]


def chunks(items: list[Any], size: int = MAX_SERIES_PER_PANEL) -> list[list[Any]]:
    """``items`` cut into panels of at most ``size`` series, as evenly as possible."""
    if not items:
        return []
    panels = -(-len(items) // size)
    per = -(-len(items) // panels)
    return [items[i:i + per] for i in range(0, len(items), per)]

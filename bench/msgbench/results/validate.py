"""Check a raw result document before anything reads it: types, ranges, finite numbers.

Result files get shared, edited and truncated; ``report``, ``compare``, ``plot`` and
``export`` must say "this file is bad" in one line, never fail deep inside with a
traceback (``"delivered": "lots"``, ``"latency_ns": null``, ``NaN``, a nesting a
thousand levels deep, a zlib bomb in a histogram).

What is checked is derived from the dataclasses of :mod:`msgbench.results.model`
(and from :class:`~msgbench.workload.config.RunConfig` for ``config``,
:class:`~msgbench.accounting.histogram.LatencySummary` for the latency summaries):
each field's annotation gives the JSON type it must have, so a field added there is
checked here without a change. The rules:

* ``int`` fields hold whole non-negative numbers (no bool; :data:`SIGNED` names the
  few that may be negative), ``float`` fields finite non-negative numbers, ``str``
  text, ``bool`` true / false, ``X | None`` also null;
* ``list[X]`` and ``dict[str, X]`` are checked element by element; ``Any`` is any JSON
  whose numbers are finite;
* required fields (no default) must be there; unknown keys are tolerated (newer
  writers); a ``dict`` field shaped by :data:`SHAPES` is checked for the keys it has;
  a dataclass-typed field that is absent is looked for flattened into its parent
  (``Summary.to_json`` writes its ``Counters`` that way);
* each element of ``subscribers``, ``groups`` and ``legs`` holds the fields of its record
  (:data:`ELEMENTS`), the required ones at least;
* ``status`` is one of the ``STATUS_*`` values; encoded histograms decode within bounds;
* nesting deeper than :data:`MAX_DEPTH` is refused.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

from msgbench.accounting.histogram import Histogram, LatencySummary
from msgbench.results import model
from msgbench.results.model import ResultError, RunResult, SecondStats, Summary
from msgbench.results.records import GroupRecord, SubscriberRecord
from msgbench.workload.config import RunConfig

MAX_DEPTH = 32
"""Deepest nesting a result document may have; msgbench writes about 5 levels."""
MAX_INT = 2**64
"""Counters are 64-bit at most."""
SHAPES: Mapping[tuple[type, str], type] = {
    (RunResult, "config"): RunConfig,
    (Summary, "latency_ns"): LatencySummary,
    (Summary, "latency_uncorrected_ns"): LatencySummary,
    (Summary, "publish_delay_ns"): LatencySummary,
}
"""``dict`` fields whose keys are the fields of another dataclass (checked when present)."""
ELEMENTS: Mapping[tuple[type, str], type] = {
    (RunResult, "subscribers"): SubscriberRecord,
    (RunResult, "groups"): GroupRecord,
    (RunResult, "legs"): LatencySummary,
}
"""``list`` / ``dict`` fields each of whose elements holds the fields of a record
(:mod:`msgbench.results.records`): its required ones, with their types."""
SIGNED: frozenset[tuple[type, str]] = frozenset({(SecondStats, "gaps")})
"""``int`` fields that may be negative: a second's gaps is a change (a late arrival fills a
gap that an earlier second counted)."""
TOP = "result"
STATUSES = frozenset(v for k, v in vars(model).items() if k.startswith("STATUS_"))


class _Bad(Exception):
    """A check failed at ``path``."""

    def __init__(self, path: str, what: str) -> None:
        super().__init__(f"{path}: {what}")


def validate_document(data: Any) -> None:
    """Raise :class:`ResultError` (one line naming the field) unless ``data`` is a result
    document (of the current schema version: upgrade older ones first) whose fields have
    the types and ranges :class:`RunResult` declares, and whose histograms decode."""
    validate_fields(RunResult, data)
    try:
        _histograms(data)
    except _Bad as exc:
        raise ResultError(f"malformed result document: {exc}") from None


def validate_fields(cls: type, data: Any, what: str = "result") -> None:
    """Raise :class:`ResultError` unless ``data`` holds the fields of dataclass ``cls`` with
    the types and ranges of its annotations (the rules in the module docstring)."""
    try:
        _dataclass(cls, data, TOP if what == TOP else what, 0, require=True)
    except _Bad as exc:
        raise ResultError(f"malformed result document: {exc}") from None
    except RecursionError:
        raise ResultError("malformed result document: nested too deeply") from None


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    # resolved once per class: a file holds a record per subscriber, thousands at times
    return typing.get_type_hints(cls)


def _dataclass(cls: type, value: Any, path: str, depth: int, require: bool) -> None:
    if not isinstance(value, dict):
        raise _Bad(path, f"expected an object, got {_kind(value)}")
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        where = f"{path}.{f.name}" if path != TOP else f.name
        if f.name not in value:
            nested = hints[f.name]
            if dataclasses.is_dataclass(nested) and isinstance(nested, type):
                # written flattened into its parent (the summary's Counters): look there
                _dataclass(nested, value, path, depth + 1, require)
                continue
            no_default = (f.default is dataclasses.MISSING
                          and f.default_factory is dataclasses.MISSING)
            if require and no_default:
                raise _Bad(where, "missing")
            continue
        item = value[f.name]
        shape = SHAPES.get((cls, f.name))
        if shape is not None:
            _dataclass(shape, item, where, depth + 1, require=shape is not RunConfig)
            _any(item, where, depth + 1)  # the keys it does not know: finite JSON at least
        elif (cls, f.name) in ELEMENTS:
            _check(hints[f.name], item, where, depth + 1)
            record = ELEMENTS[(cls, f.name)]
            keyed = item.items() if isinstance(item, dict) else enumerate(item)
            for key, element in keyed:
                _dataclass(record, element, f"{where}[{key}]", depth + 2, require=True)
        elif (cls, f.name) in SIGNED:
            _check(hints[f.name], item, where, depth + 1, signed=True)
        else:
            _check(hints[f.name], item, where, depth + 1)
    if cls is RunResult and value.get("status") not in STATUSES:
        raise _Bad("status", f"must be one of {', '.join(sorted(STATUSES))}")


def _check(hint: Any, value: Any, path: str, depth: int, signed: bool = False) -> None:
    """``value`` against the annotation ``hint`` (``signed``: negative numbers allowed)."""
    if depth > MAX_DEPTH:
        raise _Bad(path, "nested too deeply")
    origin = typing.get_origin(hint)
    if hint is Any:
        _any(value, path, depth)
    elif origin in (types.UnionType, typing.Union):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                _check(option, value, path, depth)
                return
            except _Bad as exc:
                errors.append(exc)
        raise errors[0] if errors else _Bad(path, "must be null")
    elif dataclasses.is_dataclass(hint) and isinstance(hint, type):
        _dataclass(hint, value, path, depth, require=True)
    elif origin is list:
        if not isinstance(value, list):
            raise _Bad(path, f"expected a list, got {_kind(value)}")
        (item,) = typing.get_args(hint) or (Any,)
        for i, v in enumerate(value):
            _check(item, v, f"{path}[{i}]", depth + 1)
    elif origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, dict):
            raise _Bad(path, f"expected an object, got {_kind(value)}")
        args = typing.get_args(hint)
        item = args[1] if len(args) == 2 else Any
        for k, v in value.items():
            _check(item, v, f"{path}.{k}", depth + 1)
    else:
        _scalar(hint, value, path, signed)


def _scalar(hint: Any, value: Any, path: str, signed: bool = False) -> None:
    if hint is bool:
        if not isinstance(value, bool):
            raise _Bad(path, f"expected true or false, got {_kind(value)}")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(path, f"expected a whole number, got {_kind(value)}")
        if not (-MAX_INT if signed else 0) <= value <= MAX_INT:
            raise _Bad(path, f"{value} is out of range ({'-2**64' if signed else '0'} .. 2**64)")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Bad(path, f"expected a number, got {_kind(value)}")
        if not math.isfinite(value) or value < 0:
            raise _Bad(path, f"{value} is not a finite number >= 0")
    elif hint is str:
        if not isinstance(value, str):
            raise _Bad(path, f"expected text, got {_kind(value)}")
    else:  # pragma: no cover - a new annotation kind in the model: check it here
        raise _Bad(path, f"cannot check values of type {hint!r}")


def _any(value: Any, path: str, depth: int) -> None:
    """Any JSON, but bounded in depth and with finite numbers."""
    stack = [(value, depth)]
    while stack:
        v, d = stack.pop()
        if d > MAX_DEPTH:
            raise _Bad(path, "nested too deeply")
        if isinstance(v, float) and not math.isfinite(v):
            raise _Bad(path, f"{v} is not a finite number")
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)


def _histograms(data: dict[str, Any]) -> None:
    """Every encoded histogram decodes (within bounds: see :meth:`Histogram.decode`)."""
    encoded = [(f"histograms.{k}", v) for k, v in data.get("histograms", {}).items()]
    encoded += [(f"series[{i}].histogram", s.get("histogram", ""))
                for i, s in enumerate(data.get("series", []))]
    for where, text in encoded:
        if text:
            try:
                Histogram.decode(text)
            except ValueError as exc:
                raise _Bad(where, str(exc)) from None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "true/false", int: "a number", float: "a number", str: "text",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)

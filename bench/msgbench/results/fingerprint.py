"""The result schema's fingerprint: every field of the result document, hashed.

A field added, removed, renamed or retyped in any dataclass a :class:`RunResult` is made
of, or in the records of its subscribers, groups and legs, changes the fingerprint.
:data:`~msgbench.results.schema.HISTORY` records the fingerprint of the current version,
and a test compares the two, so a change of the format without a new version (and its
upgrade from the last) fails there instead of reaching files that claim an older version.
"""

from __future__ import annotations

import dataclasses
import hashlib
import typing
from typing import Any

from msgbench.results.model import RunResult
from msgbench.results.validate import ELEMENTS

ROOTS: tuple[type[Any], ...] = (RunResult, *ELEMENTS.values())
"""The result and the records of its lists and dicts (which it holds as plain JSON)."""


def schema_fields(roots: tuple[type[Any], ...] = ROOTS) -> list[str]:
    """``Class.field: type`` for every field of ``roots`` and of every dataclass their
    fields hold (inside lists and dicts too), sorted."""
    out: set[str] = set()
    todo: list[type[Any]] = list(roots)
    seen: set[type[Any]] = set()
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            out.add(f"{cls.__name__}.{f.name}: {f.type}")
            todo += [t for t in _types_in(hints[f.name])
                     if isinstance(t, type) and dataclasses.is_dataclass(t)]
    return sorted(out)


def _types_in(hint: Any) -> list[Any]:
    """``hint`` and every type it is built from (``list[SecondStats]`` -> both)."""
    out = [hint]
    for arg in typing.get_args(hint):
        out += _types_in(arg)
    return out


def fingerprint(roots: tuple[type[Any], ...] = ROOTS) -> str:
    """A short hash of :func:`schema_fields`."""
    return hashlib.sha256("\n".join(schema_fields(roots)).encode()).hexdigest()[:16]

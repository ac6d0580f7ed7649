"""Every design that carries a pattern, asked of the installed targets (never a list kept here).

A design is a target and the flags that make it one (``zmq --zmq-mode proxy``, ``ws
--servers 2 --bridge redis``): each target's declared :attr:`~msgbench.api.Target.variants`
(its defaults when it declares none), kept where the variant, and the target, carry the
pattern. ``scripts/publish_results.py`` measures these; a new target or mode is in its
tables without an edit outside the target's folder.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from msgbench.api.registry import load_target_class, target_names
from msgbench.api.target import Pattern, Target
from msgbench.api.variants import Variant

REFERENCE = "inproc"
"""The design every table starts with: msgbench's own ceiling, the others read against it."""


@dataclass(frozen=True)
class Design:
    """One design: a target and the flags that make it one."""

    target: str
    args: tuple[str, ...] = ()

    @property
    def flags(self) -> str:
        """``zmq --zmq-mode proxy``: as ``msgbench run -t`` (and a sweep's cell) takes it."""
        return shlex.join((self.target, *self.args))


def carried(target: type[Target]) -> frozenset[Pattern]:
    """The patterns ``target`` declares it carries: the one place that asks."""
    return frozenset(target.patterns)


def _variant_carries(target: type[Target], variant: Variant, pattern: Pattern) -> bool:
    if pattern not in carried(target):
        return False
    return not variant.patterns or pattern in variant.patterns


def ready_targets() -> dict[str, type[Target]]:
    """Every registered target that loads and whose ``check()`` passes here, by name; a
    broken or unavailable one (its extra not installed) is left out, never an error."""
    ready: dict[str, type[Target]] = {}
    for name in target_names():
        try:
            cls = load_target_class(name)
            if cls().check().ok:
                ready[name] = cls
        except Exception:  # a broken plugin is simply not run
            continue
    return ready


def _table_order(names: Iterable[str]) -> list[str]:
    return sorted(names, key=lambda n: (n != REFERENCE, n))


def designs(pattern: Pattern, targets: Mapping[str, type[Target]]) -> tuple[Design, ...]:
    """The designs of ``targets`` that carry ``pattern``: the reference (inproc) first, then
    by target name, each target's variants in its declared order."""
    out: list[Design] = []
    for name in _table_order(targets):
        cls = targets[name]
        for variant in cls.variants or (Variant(),):
            if _variant_carries(cls, variant, pattern):
                out.append(Design(name, variant.args))
    return tuple(out)


def narrowed(found: tuple[Design, ...], wanted: str | None) -> tuple[Design, ...]:
    """``found`` narrowed to ``wanted``: comma-separated target names or whole designs
    (``zmq --zmq-mode proxy``); None or empty keeps them all."""
    if not wanted:
        return found
    names = {w.strip() for w in wanted.split(",") if w.strip()}
    return tuple(d for d in found if d.target in names or d.flags in names)


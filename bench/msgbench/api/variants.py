"""The designs a target makes: its defaults, and the flag sets that make another design of it.

A tool that runs every design (``scripts/publish_results.py``, via
:mod:`msgbench.orchestration.designs`) asks each target's :attr:`Target.variants` instead of
keeping a list of its own, so a new target, or a new mode of one, is published without an
edit outside its folder. A mode option's choices become variants with
:func:`mode_variants`; a design that needs a combination of flags (``ws --servers 2
--bridge redis``) is a :class:`Variant` written out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from msgbench.api.target import Pattern, TargetOption


@dataclass(frozen=True)
class Variant:
    """One design of a target: the target run with ``args`` (none: its defaults).

    ``patterns`` are the patterns this variant carries, a subset of the target's; empty means
    every pattern the target carries.
    """

    args: tuple[str, ...] = ()
    patterns: frozenset[Pattern] = frozenset()


def mode_variants(options: Sequence[TargetOption], flag: str,
                  patterns_of: Mapping[Pattern, Sequence[str]] | None = None
                  ) -> tuple[Variant, ...]:
    """One variant per choice of the mode option ``flag`` among ``options``.

    Without ``patterns_of`` every choice carries every pattern of the target: the choice
    the option declares as its default is the target with no flag, each other choice is
    ``flag choice``. With it, the choices carry different patterns (``patterns_of`` lists
    the modes of each, the one the target picks by default for that pattern first): the
    target with no flag carries those patterns with their default modes, and each other mode
    is ``flag mode`` for its pattern alone.

    Raises ``ValueError`` (a target's declaration is wrong, at import) when ``flag`` is no
    option with choices, or ``patterns_of`` leaves a choice out or names one it does not have.
    """
    option = next((o for o in options if o.flag == flag), None)
    if option is None or not option.choices:
        raise ValueError(f"{flag} is not an option with choices, so it has no modes")
    if patterns_of is None:
        return tuple(Variant(() if choice == option.default else (flag, choice))
                     for choice in option.choices)
    listed = [mode for modes in patterns_of.values() for mode in modes]
    if sorted(listed) != sorted(option.choices):
        raise ValueError(f"the modes of each pattern ({', '.join(listed)}) must be the "
                         f"choices of {flag} ({', '.join(option.choices)}), each once")
    others = [Variant((flag, mode), frozenset({pattern}))
              for pattern, modes in patterns_of.items() for mode in modes[1:]]
    return (Variant(patterns=frozenset(patterns_of)), *others)

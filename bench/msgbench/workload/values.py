"""The values users type (durations, rates, churn) and the kinds of value a run option takes.

Every parser raises :class:`ConfigError` with one line meant for the user. A
:class:`ValueKind` pairs a parser with its inverse, so that an option's default on the
command line is derived from the config field's default instead of being written twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|h)?\s*$")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
AUTO = "auto"
MAX = "max"
NO_CHURN = ("", "none", "0")


class ConfigError(ValueError):
    """Invalid user input; ``str(exc)`` is one line for the user."""


def parse_duration(text: str, what: str = "duration") -> float:
    """Parse ``500ms``, ``10s``, ``2m``, ``1.5h`` or a bare number of seconds into seconds."""
    match = _DURATION_RE.match(text)
    if not match:
        raise ConfigError(f"invalid {what} {text!r}: use a number with a unit, e.g. 500ms, 10s, 2m")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def parse_churn(text: str | None) -> tuple[float, float]:
    """Parse ``AWAY/PERIOD`` (``500ms/2s``) into seconds; None or ``none`` is no churn."""
    if text is None or text.strip().lower() in NO_CHURN:
        return 0.0, 0.0
    away, sep, period = text.partition("/")
    if not sep:
        raise ConfigError(f"invalid --churn {text!r}: use AWAY/PERIOD, e.g. 500ms/2s")
    return parse_duration(away, "--churn away time"), parse_duration(period, "--churn period")


def parse_rate(text: str) -> float | None:
    """Parse a per-publisher rate: a positive number (``10000``, ``50k``, ``1.5M``) or ``max``.

    Returns None for ``max`` (closed loop).
    """
    t = text.strip().lower()
    if t == MAX:
        return None
    mult = 1.0
    if t and t[-1] in "km":
        mult = 1e3 if t[-1] == "k" else 1e6
        t = t[:-1]
    try:
        rate = float(t) * mult
    except ValueError:
        raise ConfigError(f"invalid rate {text!r}: use messages/s per publisher or 'max'") from None
    if not rate > 0 or rate != rate or rate == float("inf"):
        raise ConfigError(f"rate must be a positive number of messages/s, got {text!r}")
    return rate


def parse_procs(text: str | None, flag: str = "--procs") -> int | None:
    """A whole number of processes, or ``auto`` (None: msgbench picks)."""
    if text is None or text == AUTO:
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{flag} takes a whole number or 'auto', got {text!r}") from None


CliType = Literal["text", "int", "path", "flag"]
"""How the command line reads the value before the kind's parser sees it."""


@dataclass(frozen=True)
class ValueKind:
    """A kind of option value: ``parse(typed, flag)`` turns what the command line read into
    the config's value(s); ``show(value)`` is the inverse (what to type for that value, None
    for "not given"), used to derive the command-line default from the field's default."""

    name: str
    """What the value is, for the generated docs (``duration``, ``whole number``)."""
    parse: Callable[[Any, str], Any]
    show: Callable[[Any], Any]
    cli_type: CliType = "text"


def _same(value: Any, _flag: str = "") -> Any:
    return value


def _duration_text(seconds: float) -> str:
    return f"{seconds:g}s"


def _churn_text(value: tuple[float, float]) -> str | None:
    away, period = value
    return None if not period else f"{away:g}s/{period:g}s"


TEXT = ValueKind("text", _same, _same)
WHOLE = ValueKind("whole number", _same, _same, cli_type="int")
SWITCH = ValueKind("switch", lambda v, _f: bool(v), _same, cli_type="flag")
DIRECTORY = ValueKind("directory", _same, _same, cli_type="path")
OPTIONAL_TEXT = ValueKind("text", lambda v, _f: v or "", lambda v: v or None)
"""Text where not given is the empty string in the config."""
DURATION = ValueKind("duration", lambda v, f: parse_duration(v, f), _duration_text)
OPTIONAL_DURATION = ValueKind(
    "duration", lambda v, f: None if v is None else parse_duration(v, f),
    lambda v: None if v is None else _duration_text(v))
RATE = ValueKind("rate or max", lambda v, _f: parse_rate(v),
                 lambda v: MAX if v is None else f"{v:g}")
PROCS = ValueKind("whole number or auto", parse_procs,
                  lambda v: AUTO if v is None else str(v))
CHURN = ValueKind("AWAY/PERIOD", lambda v, _f: parse_churn(v), _churn_text)
"""Two durations, for two config fields."""

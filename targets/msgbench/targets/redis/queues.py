"""What the Redis task designs share: option parsing and the redelivery marker.

The list reaper marks a task it puts back by prefixing one byte no payload
starts with (payloads start with a byte <= ``PAYLOAD_FIRST_BYTE_MAX``, see
:mod:`msgbench.api.target`), so the worker that takes it again can say
``redelivered=True`` without reading the envelope.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from msgbench.api.target import JSON, PAYLOAD_FIRST_BYTE_MAX, TargetError

REDELIVERED_MARK = 0xFF
"""First byte of a task the reaper put back (no payload starts with it)."""
AFTER_RUN_TIMEOUT_S = 0.5
"""How long a query after the run (what a design's keys still hold, deleting the run's keys
from a user's server) may wait for the server: a healthy one answers in microseconds, a
stopped or unreachable one (the run failed for it) must not hold the run's exit up for a
client's whole socket timeout."""
assert REDELIVERED_MARK > PAYLOAD_FIRST_BYTE_MAX

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m)?\s*$")
_UNIT_MS = {"ms": 1.0, "s": 1000.0, "m": 60_000.0, None: 1000.0}


def duration_ms(options: Mapping[str, JSON], key: str, flag: str, default: str) -> int:
    """``options[key]`` (``500ms``, ``1s``, ``1.5``: seconds) as whole milliseconds, at least 1.

    Raises :class:`TargetError` with one line naming ``flag``.
    """
    text = str(options.get(key) or default)
    match = _DURATION_RE.match(text)
    if not match:
        raise TargetError(f"invalid {flag} {text!r}: use a duration such as 500ms or 2s")
    ms = round(float(match.group(1)) * _UNIT_MS[match.group(2)])
    if ms < 1:
        raise TargetError(f"{flag} must be at least 1ms")
    return ms


def split_marked(items: list[bytes]) -> list[tuple[list[bytes], bool]]:
    """Cut ``items`` into runs of (payloads, redelivered), in order, marks removed."""
    runs: list[tuple[list[bytes], bool]] = []
    for item in items:
        marked = bool(item) and item[0] == REDELIVERED_MARK
        payload = item[1:] if marked else item
        if runs and runs[-1][1] == marked:
            runs[-1][0].append(payload)
        else:
            runs.append(([payload], marked))
    return runs

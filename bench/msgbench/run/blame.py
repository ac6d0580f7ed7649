"""Name what ended a run, in one line a user can act on.

A worker's failure is often a server's death seen from the client side; a
probe that times out says which listener never heard which publisher; an
interrupt says which signal it was. The coordinator asks here when a phase
gives up, so the reason names the cause instead of the symptom.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from msgbench.run.pool import RunAborted
from msgbench.run.watch import ServerWatch

SERVER_CAUSE_GRACE_S = 0.5
"""After a worker fails, how long to look for a server whose death it saw: a killed process
closes its sockets before the kernel marks it dead, and on a loaded machine the worker's
report can land in between."""
SERVER_CAUSE_POLL_S = 0.05
MISSING_SHOWN = 5
"""Unheard (listener, publisher) pairs a probe failure lists before it says how many more."""


def interrupted(exc: KeyboardInterrupt) -> str:
    """The reason an interrupt gives: the CLI turns SIGTERM / SIGHUP into an interrupt that
    says which signal it was; a bare one is the user's Ctrl-C."""
    return str(exc) or "interrupted by the user (Ctrl-C)"


def blame_server(watch: ServerWatch, exc: RunAborted) -> RunAborted | None:
    """``exc`` (a worker's failure) prefixed with the death of a server ``watch`` finds,
    looking for up to :data:`SERVER_CAUSE_GRACE_S`; ``None`` when every server is fine."""
    cause = watch.check(force=True)
    give_up = time.monotonic() + SERVER_CAUSE_GRACE_S
    while cause is None and time.monotonic() < give_up:
        time.sleep(SERVER_CAUSE_POLL_S)
        cause = watch.check(force=True)
    if cause is None:
        return None
    return RunAborted(f"{cause}; then {exc}")


def probe_failure(missing: Sequence[Sequence[object]], timeout_s: float) -> str:
    """Why the probe gave up after ``timeout_s``: the first :data:`MISSING_SHOWN` of the
    ``(scope, publisher)`` pairs never heard, and how many more there are."""
    if not missing:
        return f"probe timed out after {timeout_s:g} s"
    pairs = "; ".join(
        f"{_scope_text(str(s))} never heard publisher {p}"
        for _, (s, p) in zip(range(MISSING_SHOWN), missing, strict=False)
    )
    more = (f" (and {len(missing) - MISSING_SHOWN} more pairs)"
            if len(missing) > MISSING_SHOWN else "")
    return f"probe timed out after {timeout_s:g} s: {pairs}{more}"


def _scope_text(scope: str) -> str:
    """``s3`` -> ``subscriber 3``, ``g0`` -> ``group g0``, ``r1`` -> ``requester 1``."""
    kind = {"s": "subscriber ", "g": "group g", "r": "requester "}.get(scope[:1], scope[:1])
    return f"{kind}{scope[1:]}"

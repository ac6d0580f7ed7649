"""``msgbench run`` against the ways a run ends early or cannot keep its result.

SIGTERM and SIGHUP (CI cancelling a job, ``timeout``, a closed terminal) are
turned into the KeyboardInterrupt the coordinator already handles for Ctrl-C:
it stops every process and returns the partial result. A result that cannot be
written where ``--out`` says goes to the temp directory, or to stderr.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import click

from msgbench.results.model import RunResult, write


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: handled like Ctrl-C (the coordinator catches
    KeyboardInterrupt and writes the partial result); ``str(exc)`` names the signal."""


class StopSignals:
    """Turns SIGTERM and SIGHUP into :class:`Terminated` while a run measures.

    CI cancelling a job, ``timeout`` and a closed terminal send these: without a
    handler the process dies at once and what was measured is lost. Only the first
    signal raises; later ones (while the partial result is being collected) are
    remembered, not raised, so they cannot cut the shutdown short.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.received: str | None = None
        """The signal that ended the run, if one did."""
        self.late: str | None = None
        """A signal that came when it could no longer stop anything."""
        self.armed = True
        self.pid = os.getpid()

    def _handle(self, signum: int, frame: object) -> None:
        if os.getpid() != self.pid:
            # a child forked to exec a server, still running Python: the signal (a process
            # group's, from ``timeout`` or a terminal) is for it too, so act as it would
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        name = signal.Signals(signum).name
        if self.armed:
            self.armed = False
            self.received = name
            raise Terminated(f"terminated by {name}")
        self.late = self.late or name

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopSignals]:
        """Install the handlers for the block, restore the previous ones after it."""
        previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


RESULT_FALLBACK_PREFIX = "msgbench-result-"
CTRL_C_REASON = "interrupted by the user (Ctrl-C)"


def name_the_signal(result: RunResult, name: str) -> RunResult:
    """The coordinator words every KeyboardInterrupt as Ctrl-C; say which signal it was."""
    reasons = [f"terminated by {name}" if r == CTRL_C_REASON else r for r in result.reasons]
    return dataclasses.replace(result, reasons=reasons)


def save_elsewhere(result: RunResult, path: Path, exc: OSError) -> Path | None:
    """The result could not go to ``path``: save it in the temp directory and say where,
    or, when that fails too, print the document on stderr. Never lose a measurement."""
    why = exc.strerror or str(exc)
    try:
        fd, tmp = tempfile.mkstemp(prefix=RESULT_FALLBACK_PREFIX, suffix=".json")
        os.close(fd)
        saved = write(result, Path(tmp))
    except OSError:
        click.echo(f"msgbench: error: cannot write the result to {path}: {why}; "
                   "the result document follows on stderr", err=True)
        sys.stderr.write(json.dumps(result.to_json()) + "\n")
        return None
    click.echo(f"msgbench: error: cannot write the result to {path}: {why}; "
               f"saved it as {saved} instead", err=True)
    return saved

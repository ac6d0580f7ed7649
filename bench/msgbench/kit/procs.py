"""Helpers for targets that run server processes: free ports, spawning, readiness, stopping.

Servers are started in their own session (a Ctrl-C in the terminal reaches
msgbench, which then stops them in order) and with a parent-death signal, so
that even a msgbench killed with SIGKILL leaves no server behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from msgbench.api.target import TargetError

LOOPBACK = "127.0.0.1"
READY_POLL_S = 0.02
STOP_TIMEOUT_S = 3.0
_PR_SET_PDEATHSIG = 1


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that was free a moment ago (the OS picks it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def spawn_server(
    argv: Sequence[str], log_path: Path | None = None, cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server process that dies with msgbench; stdout and stderr go to ``log_path``.

    ``env`` adds environment variables: the way to hand a server a secret, which on its
    command line every user of the machine could read (``ps``).
    """
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**os.environ, **env} if env else None,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    finally:
        if log_path:
            out.close()  # type: ignore[union-attr]


def wait_for_port(
    host: str, port: int, timeout_s: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until ``host:port`` accepts a TCP connection.

    Raises TimeoutError after ``timeout_s``, or RuntimeError at once when
    ``proc`` exits first.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nothing listening on {host}:{port} after {timeout_s:g} s")
        time.sleep(READY_POLL_S)


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL. Safe on an already dead process,
    and prompt on a stopped one (SIGSTOP): it is continued so it can act on the SIGTERM."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
            proc.send_signal(signal.SIGCONT)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()


def wait_ready_line(proc: subprocess.Popen[bytes], log: Path, marker: str, what: str,
                    timeout_s: float, poll_s: float) -> None:
    """Wait until ``marker`` appears in ``proc``'s ``log``; raises :class:`TargetError` (one
    line, with the log's last line) when it exits first or is not ready within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = log.read_text(errors="replace") if log.exists() else ""
        if marker in text:
            return
        if proc.poll() is not None:
            tail = (text.strip().splitlines() or ["no output"])[-1]
            raise TargetError(f"{what} exited at start (code {proc.returncode}): {tail}")
        if time.monotonic() >= deadline:
            raise TargetError(f"{what} not ready within {timeout_s:g} s")
        time.sleep(poll_s)


def which(program: str) -> str | None:
    """Full path of ``program`` on PATH, or None."""
    return shutil.which(program)

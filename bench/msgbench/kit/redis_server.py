"""Start and stop a private redis-server for a run, or describe a user's server.

Used by every target that needs Redis (pub/sub, streams, the chat servers'
bridge). A private server listens on a free loopback port with a known,
persistence-free configuration and dies with msgbench.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from msgbench.api.target import TargetError, TargetOption
from msgbench.kit.procs import LOOPBACK, free_port, spawn_server, stop_process, which
from msgbench.kit.urls import mask_url

START_TIMEOUT_S = 10.0
PING_POLL_S = 0.02
CONNECT_TIMEOUT_S = 5.0
INSTALL_HINT = (
    "redis-server is not installed: install it (Debian/Ubuntu: sudo apt-get install "
    "redis-server) or pass --redis-url redis://host:port"
)
REDIS_URL_OPTION = TargetOption(
    "--redis-url", "Use this Redis (redis://[:password@]host:port/db, rediss:// for TLS) "
    "instead of starting a private redis-server.", secret=True)
"""The one ``--redis-url`` every Redis-backed target declares (same flag, same meaning)."""
# Settings that shape a benchmark's outcome, recorded in every result.
RECORDED_SETTINGS = ("client-output-buffer-limit", "io-threads", "maxmemory", "appendonly",
                     "save")


@dataclass(frozen=True)
class RedisServer:
    """A reachable Redis: its URL, the pid when msgbench started it, and its facts."""

    url: str
    pid: int | None
    version: str
    settings: dict[str, str]


def check_installed() -> str | None:
    """None when redis-server is on PATH, else the install hint."""
    return None if which("redis-server") else INSTALL_HINT


def describe(url: str) -> tuple[str, dict[str, str]]:
    """Connect to ``url`` and return (server version, recorded settings).

    Raises :class:`TargetError` with one line: unreachable, wrong password, ...
    """
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S,
                                      socket_timeout=CONNECT_TIMEOUT_S)
        with contextlib.closing(client):
            info = client.info("server")
            settings: dict[str, str] = {}
            for name in RECORDED_SETTINGS:
                with contextlib.suppress(redis.ResponseError):
                    settings.update({str(k): str(v) for k, v in client.config_get(name).items()})
    except redis.AuthenticationError as exc:
        if "HELLO must be called" in str(exc) or "NOAUTH" in str(exc):
            raise TargetError(f"Redis at {_safe(url)} needs a password: put it in the URL "
                              "(redis://:PASSWORD@host:port)") from None
        raise TargetError(f"Redis at {_safe(url)} refused the password: {exc}") from None
    except redis.ResponseError as exc:
        if "NOAUTH" in str(exc) or "AUTH" in str(exc).upper():
            raise TargetError(f"Redis at {_safe(url)} needs a password: {exc}") from None
        raise TargetError(f"Redis at {_safe(url)}: {exc}") from None
    except redis.InvalidResponse as exc:
        # an HTTP, SSH, ... server on that port: say so instead of hiredis' traceback
        raise TargetError(f"the server at {_safe(url)} does not speak Redis (RESP): "
                          f"{_one_line(exc)}") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise TargetError(f"cannot reach Redis at {_safe(url)}: {_one_line(exc)}") from None
    except redis.RedisError as exc:
        raise TargetError(f"Redis at {_safe(url)}: {_one_line(exc)}") from None
    except ValueError as exc:
        raise TargetError(f"invalid Redis URL {_safe(url)!r}: {_safe(str(exc))}") from None
    return str(info.get("redis_version", "unknown")), settings


def _one_line(exc: BaseException) -> str:
    """The first line of an exception's text, without secrets (or its type when empty)."""
    lines = str(exc).strip().splitlines()
    return mask_url(lines[0]) if lines else type(exc).__name__


def _safe(url: str) -> str:
    """The URL (or a message holding it) without its password."""
    return mask_url(url)


@contextlib.contextmanager
def private_server(extra_args: Sequence[str] = (), port: int | None = None
                   ) -> Iterator[RedisServer]:
    """Run a redis-server on a free loopback port for the duration of the block.

    No persistence, no protected-mode surprises, bound to 127.0.0.1 only.
    ``extra_args`` are passed through (``--client-output-buffer-limit ...``).
    Raises :class:`TargetError` when it is not installed or does not start.
    """
    hint = check_installed()
    if hint:
        raise TargetError(hint)
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="msgbench-redis-") as tmp:
        argv = ["redis-server", "--bind", LOOPBACK, "--port", str(port), "--save", "",
                "--appendonly", "no", "--dir", tmp, "--daemonize", "no",
                "--loglevel", "warning", *extra_args]
        log = Path(tmp) / "redis.log"
        proc = spawn_server(argv, log_path=log)
        url = f"redis://{LOOPBACK}:{port}/0"
        try:
            _wait_ready(url, proc, log)
            version, settings = describe(url)
            yield RedisServer(url, proc.pid, version, settings)
        finally:
            stop_process(proc)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    with contextlib.closing(client):
        while True:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise TargetError(f"redis-server exited at start (code {proc.returncode}): "
                                  f"{tail[0]}")
            try:
                if client.ping():
                    return
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                pass
            if time.monotonic() >= deadline:
                raise TargetError(f"redis-server did not answer within {START_TIMEOUT_S:g} s")
            time.sleep(PING_POLL_S)

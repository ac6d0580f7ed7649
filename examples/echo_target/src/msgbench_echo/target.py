"""The ``echo`` target: what msgbench sees of this package.

``serve`` (in the coordinator) starts the echo server as its own process on 127.0.0.1 and a
free port, so its CPU and memory are measured like any server's, or checks a running one
given by ``--echo-addr``; ``client`` (in each worker) connects to it. ``faults`` tells the
shared fault suite how to break it.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from msgbench.api import (
    JSON,
    Availability,
    Client,
    Endpoint,
    FaultPlan,
    Pattern,
    ServerFault,
    ServerProcess,
    ServeSpec,
    Target,
    TargetError,
    TargetOption,
    Unreachable,
)
from msgbench.kit.procs import LOOPBACK, free_port, spawn_server, stop_process, wait_ready_line
from msgbench_echo import server
from msgbench_echo.client import CONNECT_TIMEOUT_S, EchoClient

SERVER_MODULE = "msgbench_echo.server"
ROLE = "echo-server"
START_TIMEOUT_S = 10.0
READY_POLL_S = 0.02
ADDR_OPTION = "--echo-addr"


def parse_addr(text: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port); raises :class:`TargetError` (one line) otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise TargetError(f"{ADDR_OPTION} must be HOST:PORT, got {text!r}")
    return host, int(port)


class EchoTarget(Target):
    """Broadcast, tasks and rpc through the echo server; see :mod:`msgbench_echo.server`."""

    name = "echo"
    description = ("example target (its own package): an asyncio TCP server routing "
                   "length-prefixed frames; broadcast, round-robin tasks, rpc")
    patterns = frozenset({Pattern.BROADCAST, Pattern.TASKS, Pattern.RPC})
    options = (
        TargetOption(ADDR_OPTION, "Use a running echo server at HOST:PORT instead of "
                     f"starting one (python -m {SERVER_MODULE} --port PORT)."),
    )
    faults = FaultPlan(
        Unreachable((ADDR_OPTION, "127.0.0.1:{port}"), "cannot reach the echo server"),
        servers=(ServerFault(ROLE, SERVER_MODULE, ROLE),
                 ServerFault(f"{ROLE}-tasks", SERVER_MODULE, ROLE, pattern="tasks")),
    )

    def check(self) -> Availability:
        """Always runnable: the server is Python, shipped in this package."""
        return Availability(True, f"{SERVER_MODULE} (this package)")

    def validate(self, options: Mapping[str, JSON]) -> None:
        """Reject an ``--echo-addr`` that is not HOST:PORT."""
        if options.get("echo_addr"):
            parse_addr(str(options["echo_addr"]))

    @contextlib.contextmanager
    def serve(self, spec: ServeSpec) -> Iterator[Endpoint]:
        """Start a private echo server for the run (stopped on exit), or check the given one."""
        given = spec.options.get("echo_addr")
        if given:
            host, port = parse_addr(str(given))
            try:
                socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
            except OSError as exc:
                raise TargetError(f"cannot reach the echo server at {host}:{port}: "
                                  f"{exc.strerror or exc}") from None
            yield Endpoint({"host": host, "port": port}, (), {"managed": False})
            return
        port = free_port()
        with tempfile.TemporaryDirectory(prefix="msgbench-echo-") as tmp:
            log = Path(tmp) / "echo-server.log"
            proc = spawn_server([sys.executable, "-m", SERVER_MODULE, "--port", str(port)],
                                log_path=log)
            try:
                wait_ready_line(proc, log, server.READY, ROLE, START_TIMEOUT_S, READY_POLL_S)
                yield Endpoint({"host": LOOPBACK, "port": port},
                               (ServerProcess(ROLE, proc.pid),), {"managed": True})
            finally:
                stop_process(proc)

    def client(self, endpoint: Mapping[str, JSON], options: Mapping[str, JSON]) -> Client:
        """An :class:`EchoClient` for this worker."""
        return EchoClient(str(endpoint["host"]), int(endpoint["port"]))

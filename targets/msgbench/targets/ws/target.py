"""``ws``: WebSocket clients against msgbench's own chat server(s).

``serve`` starts ``--servers K`` chat servers (``msgbench serve chat``, one
process each) on free loopback ports and, for ``--bridge redis``, a private
redis-server (or uses ``--redis-url``). Topics are chat rooms: a subscriber
joins ``/ws?room=TOPIC&ack=1`` and is subscribed once the server's "joined"
frame arrives; a publisher opens one send-only connection
(``listen=0``) per room it sends to, and sends one binary frame per message.

``--pattern rpc``: requesters and responders are WebSocket clients of the same
servers (requester *i* placed as publisher *i*, responder *j* as subscriber
*j*); a responder joins its room with ``respond=1``, requests and replies are
the frames of :mod:`msgbench.targets.ws.chat_rpc`, and bridged servers pass a
request to a responder on another server, and its reply back, over the bridge
(``--ws-placement cross``: every request and reply crosses it). The worker side
of that lives in :mod:`msgbench.targets.ws.rpc_client`.

Which server each client uses (``--ws-placement``):

* ``spread`` (default): publisher *i* -> server *i mod K*, subscriber *j* ->
  server *(j + 1) mod K*. With K >= 2 both paths are exercised: about half of
  the deliveries stay on one server, the others cross the bridge.
* ``cross``: every publisher on server 0, subscriber *j* on server
  *1 + j mod (K - 1)*: every delivery crosses the bridge (needs K >= 2).

A server that disconnects a subscriber (too slow, shutting down, killed)
shows as ``sink.disconnected``; a publisher whose server is gone raises from
``publish``, which ends the run. The worker-side clients live in
:mod:`msgbench.targets.ws.client`; the server in
:mod:`msgbench.targets.ws.chat_server`.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import urllib.request
from collections.abc import Iterator, Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

from msgbench.api.faults import FaultPlan, ServerFault, Unreachable
from msgbench.api.target import (
    JSON,
    Availability,
    Client,
    Endpoint,
    Pattern,
    ServerProcess,
    ServeSpec,
    Target,
    TargetError,
    TargetOption,
    secret_env_name,
)
from msgbench.api.variants import Variant
from msgbench.kit import redis_server
from msgbench.kit.procs import LOOPBACK, free_port, spawn_server, stop_process, wait_for_port
from msgbench.kit.redis_server import REDIS_URL_OPTION
from msgbench.targets.ws.chat_server import (
    DEFAULT_MAX_CLIENT_BUFFER,
    DEFAULT_MAX_SIZE,
    MAX_CLIENT_BUFFER,
)
from msgbench.targets.ws.client import PLACEMENTS
from msgbench.targets.ws.rpc_client import WsRpcClient

START_TIMEOUT_S = 15.0
STATS_TIMEOUT_S = 1.0
SERVE_CHAT = (sys.executable, "-m", "msgbench.cli.serve_cmd", "chat")
"""``msgbench serve chat`` without loading every target first (a second faster to start)."""
BRIDGES = ("none", "redis", "zmq")
MAX_SERVERS = 32
"""Chat servers one run may start: each is a Python process of about 45 MiB."""
BRIDGED_REDIS = ("--servers", "2", "--bridge", "redis")
_WEBSOCKETS_VERSION = version("websockets")
SERVERS = TargetOption("--servers", "ws: chat servers (each its own process)", 1, kind="int",
                       min=1, max=MAX_SERVERS)
MAX_CLIENT_BUFFER_OPTION = TargetOption(
    "--max-client-buffer", "ws: bytes waiting for a client before the server disconnects it",
    DEFAULT_MAX_CLIENT_BUFFER, kind="int", min=1, max=MAX_CLIENT_BUFFER)


class WsTarget(Target):
    """WebSocket chat server(s); see the module docstring."""

    name = "ws"
    description = ("WebSocket chat server: broadcast to the clients of a room; "
                   "--servers K --bridge redis|zmq shares rooms across servers; "
                   "request/reply frames answered by a room's responders")
    patterns = frozenset({Pattern.BROADCAST, Pattern.RPC})
    faults = FaultPlan(
        Unreachable(("--servers", "2", "--bridge", "redis", "--redis-url",
                     "redis://127.0.0.1:{port}"), "cannot reach Redis"),
        servers=(ServerFault("chat-server", SERVE_CHAT[2], "chat-server", BRIDGED_REDIS),
                 ServerFault("bridge-redis", "redis-server", "redis-server", BRIDGED_REDIS)),
        responder_runs=((), ("--servers", "2", "--bridge", "zmq", "--ws-placement", "cross")),
        needs=("redis-server",))
    options = (
        SERVERS,
        TargetOption("--bridge", "ws: how chat servers share messages", "none",
                     choices=BRIDGES),
        REDIS_URL_OPTION,
        TargetOption("--ws-placement", "ws: spread (pub i -> server i mod K, sub j -> "
                     "(j+1) mod K) or cross (pubs on server 0, subs on the others)",
                     "spread", choices=PLACEMENTS),
        MAX_CLIENT_BUFFER_OPTION,
    )

    variants = (
        Variant(),
        *(Variant(("--servers", "2", "--bridge", bridge))
          for bridge in BRIDGES if bridge != "none"),
    )
    """One server, and two bridged by each bridge: three designs, every one for both patterns."""

    def check(self) -> Availability:
        """Always runnable; the Redis bridge needs redis-server or --redis-url."""
        return Availability(True, f"websockets {_WEBSOCKETS_VERSION}; --bridge redis needs "
                                  "redis-server or --redis-url")

    def validate(self, options: Mapping[str, JSON]) -> None:
        """Reject server counts, bridges and placements that cannot work."""
        k = _servers(options)
        bridge = options.get("bridge") or "none"
        if k > 1 and bridge == "none":
            raise TargetError(f"--servers {k} needs --bridge redis or zmq: unbridged chat "
                              "servers do not share messages")
        if options.get("ws_placement") == "cross" and k < 2:
            raise TargetError("--ws-placement cross needs --servers 2 or more")
        MAX_CLIENT_BUFFER_OPTION.number(options)
        if options.get("redis_url") and bridge != "redis":
            raise TargetError("--redis-url applies to --bridge redis only")
        if bridge == "redis" and not options.get("redis_url"):
            hint = redis_server.check_installed()
            if hint:
                raise TargetError(hint)

    @contextlib.contextmanager
    def serve(self, spec: ServeSpec) -> Iterator[Endpoint]:
        """Start the redis-server (if bridged through it) and the K chat servers."""
        opts = spec.options
        k = _servers(opts)
        bridge = str(opts.get("bridge") or "none")
        buffer = MAX_CLIENT_BUFFER_OPTION.number(opts)
        info: dict[str, Any] = {
            "servers": k, "bridge": bridge, "placement": opts.get("ws_placement") or "spread",
            "websockets": _WEBSOCKETS_VERSION, "max_client_buffer": buffer,
            # frames as large as the run's messages must pass; the default bound otherwise
            "max_size": max(DEFAULT_MAX_SIZE, spec.size + FRAME_SLACK),
        }
        procs: list[ServerProcess] = []
        with contextlib.ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="msgbench-ws-")))
            extra: list[list[str]] = [[] for _ in range(k)]
            env: dict[str, str] = {}
            if bridge == "redis":
                url = opts.get("redis_url")
                if url:
                    info["redis_version"], info["redis_settings"] = redis_server.describe(url)
                else:
                    srv = stack.enter_context(redis_server.private_server())
                    url = srv.url
                    assert srv.pid is not None
                    procs.append(ServerProcess("redis-server", srv.pid))
                    info["redis_version"], info["redis_settings"] = srv.version, srv.settings
                # by environment, not argv: a password there is visible to every user (ps)
                env[secret_env_name(REDIS_URL_OPTION.flag)] = str(url)
            ports = _distinct_ports(2 * k if bridge == "zmq" else k)
            if bridge == "zmq":
                binds = [f"tcp://{LOOPBACK}:{p}" for p in ports[k:]]
                extra = [["--zmq-bind", binds[i]]
                         + [a for j in range(k) if j != i for a in ("--zmq-peer", binds[j])]
                         for i in range(k)]
            started = []
            for i in range(k):
                argv = [*SERVE_CHAT, "--host", LOOPBACK,
                        "--port", str(ports[i]), "--bridge", bridge, "--server-id", f"s{i}",
                        "--max-client-buffer", str(buffer), "--log-level", "warning",
                        "--max-size", str(info["max_size"]),
                        *extra[i]]
                proc = spawn_server(argv, log_path=tmp / f"chat-{i}.log", env=env)
                stack.callback(stop_process, proc)
                started.append(proc)
                procs.append(ServerProcess(f"chat-server {i}", proc.pid))
            for i, proc in enumerate(started):
                try:
                    wait_for_port(LOOPBACK, ports[i], START_TIMEOUT_S, proc)
                except (RuntimeError, TimeoutError) as exc:
                    raise TargetError(f"chat server {i} did not start: "
                                      f"{_last_line(tmp / f'chat-{i}.log') or exc}") from None
            base = [f"http://{LOOPBACK}:{p}" for p in ports[:k]]
            yield Endpoint(
                data={"urls": [f"ws://{LOOPBACK}:{p}/ws" for p in ports[:k]],
                      "placement": info["placement"]},
                processes=tuple(procs),
                info=info,
            )
            # The coordinator reads ``info`` after this block: add what the servers counted.
            info["server_stats"] = [_stats(b) for b in base]

    def client(self, endpoint: Mapping[str, JSON], options: Mapping[str, JSON]) -> Client:
        """WebSocket clients for this worker."""
        return WsRpcClient(endpoint["urls"], str(endpoint.get("placement") or "spread"))


FRAME_SLACK = 1024
"""Room for the framing the ws clients add around a payload."""


def _servers(options: Mapping[str, JSON]) -> int:
    return SERVERS.number(options)


def _distinct_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        p = free_port()
        if p not in ports:
            ports.append(p)
    return ports


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _stats(base: str) -> dict[str, Any] | None:
    """A server's /stats, or None when it is gone."""
    try:
        with urllib.request.urlopen(f"{base}/stats", timeout=STATS_TIMEOUT_S) as resp:
            data: dict[str, Any] = json.loads(resp.read())
            return data
    except (OSError, ValueError):
        return None

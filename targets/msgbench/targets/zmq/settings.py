"""The options of the ``zmq`` target, checked once, and the framing shared by its modes.

Seven modes, three patterns:

* ``mesh`` and ``proxy`` carry ``--pattern broadcast`` (PUB/SUB: every subscriber
  gets every message of its topics);
* ``pipeline`` and ``broker`` carry ``--pattern tasks`` (PUSH/PULL and a
  load-balancing ROUTER broker: each message to one worker of its topic's group);
* ``reqrep``, ``dealer`` and ``rpc-broker`` carry ``--pattern rpc`` (REQ/REP lockstep,
  DEALER/ROUTER direct, and DEALER through a ROUTER/DEALER broker).

Without ``--zmq-mode`` the pattern picks: ``mesh`` for broadcast, ``pipeline`` for
tasks, ``dealer`` for rpc (:meth:`Settings.for_pattern`). A mode asked for another
pattern is refused with one line.

:func:`configure` is the socket setup every mode shares (high-water marks, kernel
buffers, reconnect interval).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import zmq

from msgbench.api.target import JSON, TargetError
from msgbench.kit.procs import LOOPBACK, free_port

BROADCAST_MODES = ("mesh", "proxy")
TASK_MODES = ("pipeline", "broker")
RPC_MODES = ("dealer", "reqrep", "rpc-broker")
MODES = BROADCAST_MODES + TASK_MODES + RPC_MODES
MODES_OF_PATTERN = {"broadcast": BROADCAST_MODES, "tasks": TASK_MODES, "rpc": RPC_MODES}
"""The modes that carry each pattern; the first is the default."""
TRANSPORTS = ("tcp", "ipc")
DEFAULT_HWM = 1000
"""ZeroMQ's own default high-water mark (messages per pipe)."""
DEFAULT_CREDIT = 1
"""Tasks a broker-mode worker asks for at a time: one, as in the zguide's load balancer."""
MAX_TOPIC_BYTES = 255
DEFAULT_REQ_TIMEOUT_MS = 1000
"""How long a ``reqrep`` requester waits for a reply before it sends its next request: the
driver's default ``--timeout``, so a lost reply costs the REQ socket what it costs the run."""
RECONNECT_IVL_MS = 20
"""Retry interval of a connect whose peer is not bound yet (ZeroMQ's default is 100 ms):
subscribers connect before publishers bind, and this shortens the probe phase."""


def configure(sock: zmq.Socket[bytes], hwm: int, sockbuf: int) -> zmq.Socket[bytes]:
    """Apply the options every zmq mode shares to ``sock`` and return it: both high-water
    marks, the kernel buffers (``sockbuf`` bytes; 0 keeps the kernel's) and the reconnect
    interval."""
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
    if sockbuf:
        sock.setsockopt(zmq.SNDBUF, sockbuf)
        sock.setsockopt(zmq.RCVBUF, sockbuf)
    return sock


def server_socket(ctx: zmq.Context[zmq.Socket[bytes]], kind: int, hwm: int, sockbuf: int
                  ) -> zmq.Socket[bytes]:
    """A socket of ``kind`` for a broker process, set up by :func:`configure`, closing at once
    (linger 0: a stopped broker drops what it holds); the caller binds it."""
    sock = configure(ctx.socket(kind), hwm, sockbuf)
    sock.setsockopt(zmq.LINGER, 0)
    return sock


def topic_prefix(topic: str) -> bytes:
    """The frame prefix of ``topic``: its length byte, then its UTF-8 bytes."""
    raw = topic.encode()
    if len(raw) > MAX_TOPIC_BYTES:
        raise TargetError(f"topic {topic[:20]!r}... is longer than {MAX_TOPIC_BYTES} bytes")
    return bytes((len(raw),)) + raw


def address(transport: str, workdir: Path, name: str) -> str:
    """A fresh address: a Unix socket in ``workdir`` (ipc) or a free loopback port (tcp)."""
    if transport == "ipc":
        return f"ipc://{workdir / name}"
    return f"tcp://{LOOPBACK}:{free_port()}"


def _whole(options: Mapping[str, JSON], key: str, default: int) -> int | None:
    value = options.get(key)
    value = default if value is None else value
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    return value

C_INT_MAX = 2**31 - 1
"""ZeroMQ takes high-water marks and socket buffer sizes as a C int."""


@dataclass(frozen=True)
class Settings:
    """The zmq options of a run, checked."""

    mode: str = ""
    """One of :data:`MODES`, or empty: by the pattern (see :meth:`for_pattern`)."""
    transport: str = "tcp"
    hwm: int = DEFAULT_HWM
    nodrop: bool = False
    sockbuf: int = 0
    """SO_SNDBUF / SO_RCVBUF of every socket in bytes; 0 keeps the kernel's (autotuned)."""
    external: tuple[str, str] | None = None
    """(xsub, xpub) of a running forwarder to use instead of starting one."""
    credit: int = DEFAULT_CREDIT
    """Broker mode: tasks a worker holds at most (it asks for more as it finishes them)."""
    req_timeout_ms: int = DEFAULT_REQ_TIMEOUT_MS
    """Reqrep mode: how long a REQ socket waits for a reply before it moves on."""

    @property
    def tasks(self) -> bool:
        """True for the modes that carry ``--pattern tasks``."""
        return self.mode in TASK_MODES

    @classmethod
    def parse(cls, options: Mapping[str, JSON]) -> Settings:
        """Read and check ``--zmq-*`` / ``--hwm``; raises :class:`TargetError` (one line)."""
        mode = options.get("zmq_mode") or ""
        transport = options.get("zmq_transport") or "tcp"
        if mode and mode not in MODES:
            raise TargetError(f"--zmq-mode must be one of {', '.join(MODES)}, got {mode!r}")
        if transport not in TRANSPORTS:
            raise TargetError(
                f"--zmq-transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}"
            )
        hwm = _whole(options, "hwm", DEFAULT_HWM)
        if hwm is None or not 0 <= hwm <= C_INT_MAX:
            raise TargetError(f"--hwm must be a whole number from 0 (no limit) to {C_INT_MAX}, "
                              f"got {options.get('hwm')!r}")
        sockbuf = _whole(options, "zmq_sockbuf", 0)
        if sockbuf is None or not 0 <= sockbuf <= C_INT_MAX:
            raise TargetError(f"--zmq-sockbuf must be a number of bytes from 0 to {C_INT_MAX}, "
                              f"got {options.get('zmq_sockbuf')!r}")
        credit = _whole(options, "zmq_credit", DEFAULT_CREDIT)
        if credit is None or credit < 1:
            raise TargetError(f"--zmq-credit must be a whole number >= 1, "
                              f"got {options.get('zmq_credit')!r}")
        if credit != DEFAULT_CREDIT and mode != "broker":
            raise TargetError("--zmq-credit needs --zmq-mode broker")
        if hwm and credit > hwm:
            # the broker's per-worker pipe must hold every task a worker may be owed
            raise TargetError(f"--zmq-credit {credit} is above --hwm {hwm}")
        req_timeout = _whole(options, "zmq_req_timeout", DEFAULT_REQ_TIMEOUT_MS)
        if req_timeout is None or not 1 <= req_timeout <= C_INT_MAX:
            raise TargetError(f"--zmq-req-timeout must be a whole number of milliseconds >= 1, "
                              f"got {options.get('zmq_req_timeout')!r}")
        if req_timeout != DEFAULT_REQ_TIMEOUT_MS and mode != "reqrep":
            raise TargetError("--zmq-req-timeout needs --zmq-mode reqrep")
        nodrop = bool(options.get("zmq_nodrop"))
        if nodrop and mode and mode not in BROADCAST_MODES:
            raise TargetError(f"--zmq-nodrop is for PUB sockets (mesh, proxy); in --zmq-mode "
                              f"{mode} senders always wait at the high-water mark")
        external = None
        spec = options.get("zmq_proxy")
        if spec:
            parts = [p.strip() for p in str(spec).split(",")]
            if len(parts) != 2 or not all(p.startswith(("tcp://", "ipc://")) for p in parts):
                raise TargetError(
                    f"--zmq-proxy takes XSUB,XPUB addresses (tcp://host:port or ipc://path), "
                    f"got {spec!r}"
                )
            if mode != "proxy":
                raise TargetError("--zmq-proxy needs --zmq-mode proxy")
            external = (parts[0], parts[1])
        return cls(mode, transport, hwm, nodrop, sockbuf, external, credit, req_timeout)

    def for_pattern(self, pattern: str) -> Settings:
        """These settings with the mode the run uses for ``pattern``; refuses a mode that
        does not carry it (one line, :class:`TargetError`)."""
        wanted = MODES_OF_PATTERN.get(pattern, BROADCAST_MODES)
        if not self.mode:
            resolved = replace(self, mode=wanted[0])
            if self.nodrop and resolved.mode not in BROADCAST_MODES:
                raise TargetError(f"--zmq-nodrop is for PUB sockets (mesh, proxy); with "
                                  f"--pattern {pattern} senders always wait at the "
                                  f"high-water mark")
            return resolved
        if self.mode in wanted:
            return self
        what = {"broadcast": "is PUB/SUB", "tasks": "hands each message to one worker",
                "rpc": "answers requests"}
        own = next(p for p, modes in MODES_OF_PATTERN.items() if self.mode in modes)
        raise TargetError(f"--zmq-mode {self.mode} {what[own]} and carries --pattern {own} "
                          f"only; for {pattern} use --zmq-mode {' or '.join(wanted)}")

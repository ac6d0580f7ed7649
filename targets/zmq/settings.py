"""The options of the ``zmq`` target, checked once, and the framing shared by its modes.

Four modes, two patterns:

* ``mesh`` and ``proxy`` carry ``--pattern broadcast`` (PUB/SUB: every subscriber
  gets every message of its topics);
* ``pipeline`` and ``broker`` carry ``--pattern tasks`` (PUSH/PULL and a
  load-balancing ROUTER broker: each message to one worker of its topic's group).

Without ``--zmq-mode`` the pattern picks: ``mesh`` for broadcast, ``pipeline`` for
tasks (:meth:`Settings.for_pattern`). A mode asked for the other pattern is refused
with one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from msgbench.api.target import JSON, TargetError
from msgbench.kit.procs import LOOPBACK, free_port

BROADCAST_MODES = ("mesh", "proxy")
TASK_MODES = ("pipeline", "broker")
MODES = BROADCAST_MODES + TASK_MODES
TRANSPORTS = ("tcp", "ipc")
DEFAULT_HWM = 1000
"""ZeroMQ's own default high-water mark (messages per pipe)."""
DEFAULT_CREDIT = 1
"""Tasks a broker-mode worker asks for at a time: one, as in the zguide's load balancer."""
MAX_TOPIC_BYTES = 255


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
        nodrop = bool(options.get("zmq_nodrop"))
        if nodrop and mode in TASK_MODES:
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
        return cls(mode, transport, hwm, nodrop, sockbuf, external, credit)

    def for_pattern(self, pattern: str) -> Settings:
        """These settings with the mode the run uses for ``pattern``; refuses a mode that
        does not carry it (one line, :class:`TargetError`)."""
        if not self.mode:
            resolved = replace(self, mode="pipeline" if pattern == "tasks" else "mesh")
            if resolved.tasks and self.nodrop:
                raise TargetError("--zmq-nodrop is for PUB sockets (mesh, proxy); with "
                                  "--pattern tasks senders always wait at the high-water mark")
            return resolved
        if pattern == "tasks" and not self.tasks:
            raise TargetError(f"--zmq-mode {self.mode} is PUB/SUB and carries --pattern "
                              f"broadcast only; for tasks use --zmq-mode pipeline or broker")
        if pattern != "tasks" and self.tasks:
            raise TargetError(f"--zmq-mode {self.mode} hands each message to one worker and "
                              f"carries --pattern tasks only; for {pattern} use --zmq-mode "
                              f"mesh or proxy")
        return self

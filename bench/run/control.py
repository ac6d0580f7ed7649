"""Typed control messages between the coordinator and its workers.

Messages are frozen dataclasses sent as one JSON document each, never
pickled, behind the small :class:`Channel` interface so tests can fake it and
another transport can replace the pipe.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from multiprocessing.connection import Connection
from typing import Any, Protocol


@dataclass(frozen=True)
class Ready:
    """Worker -> coordinator: clients are built and every subscription is in place."""

    worker: int
    subscribed: int


@dataclass(frozen=True)
class Probe:
    """Coordinator -> worker: publishers send probes until every subscriber heard them."""


@dataclass(frozen=True)
class ProbeStatus:
    """Worker -> coordinator: which (subscriber, publisher) pairs are still unheard."""

    worker: int
    complete: bool
    missing: list[list[int]] = field(default_factory=list)


@dataclass(frozen=True)
class Start:
    """Coordinator -> worker: the run's timeline in monotonic ns."""

    start_ns: int
    measure_start_ns: int
    measure_end_ns: int


@dataclass(frozen=True)
class Report:
    """Worker -> coordinator: deltas since the worker's previous report.

    ``second`` is the measurement second the deltas belong to (negative during
    warm-up). Histograms are HdrHistogram-encoded and hold MEASURE messages only.
    """

    worker: int
    second: int
    published: int = 0
    expected: int = 0
    delivered: int = 0
    received: int = 0
    delivered_in_window: int = 0
    gaps: int = 0
    duplicated: int = 0
    reordered: int = 0
    latency: str = ""
    latency_raw: str = ""
    publish_delay: str = ""
    out_of_range: int = 0
    events: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PubDone:
    """Worker -> coordinator: its publishers stopped; MEASURE messages per [pub, topic, count]."""

    worker: int
    published: list[list[int]]


@dataclass(frozen=True)
class Done:
    """Worker -> coordinator: final per-subscriber totals; the worker exits next."""

    worker: int
    subscribers: list[dict[str, int]]


@dataclass(frozen=True)
class Failed:
    """Worker -> coordinator: the worker cannot go on; ``reason`` is one line."""

    worker: int
    reason: str


@dataclass(frozen=True)
class Stop:
    """Coordinator -> worker: stop publishing, send Done and exit."""


Message = Ready | Probe | ProbeStatus | Start | Report | PubDone | Done | Failed | Stop
_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (Ready, Probe, ProbeStatus, Start, Report, PubDone, Done, Failed, Stop)
}


class ProtocolError(Exception):
    """A control message could not be decoded."""


def dumps(msg: Message) -> bytes:
    """Encode a message as JSON bytes."""
    return json.dumps({"type": type(msg).__name__, **asdict(msg)}, separators=(",", ":")).encode()


def loads(data: bytes) -> Message:
    """Decode bytes from :func:`dumps`; raises :class:`ProtocolError` on anything else."""
    try:
        obj = json.loads(data)
        cls = _TYPES[obj.pop("type")]
        names = {f.name for f in fields(cls)}
        msg: Message = cls(**{k: v for k, v in obj.items() if k in names})
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ProtocolError(f"bad control message: {exc}") from exc
    return msg


class Channel(Protocol):
    """One end of a control link."""

    def send(self, msg: Message) -> None:
        """Send one message."""

    def recv(self) -> Message:
        """Receive one message, blocking; raises EOFError when the peer is gone."""

    def poll(self, timeout: float = 0.0) -> bool:
        """True when a message can be received within ``timeout`` seconds."""

    def fileno(self) -> int:
        """A descriptor that becomes readable when a message arrives."""


class PipeChannel:
    """A :class:`Channel` over a ``multiprocessing`` connection, JSON-framed."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def send(self, msg: Message) -> None:
        """Send one message (see :class:`Channel`)."""
        self.conn.send_bytes(dumps(msg))

    def recv(self) -> Message:
        """Receive one message (see :class:`Channel`)."""
        return loads(self.conn.recv_bytes())

    def poll(self, timeout: float = 0.0) -> bool:
        """See :class:`Channel`."""
        return self.conn.poll(timeout)

    def fileno(self) -> int:
        """See :class:`Channel`."""
        return self.conn.fileno()

    def close(self) -> None:
        """Close this end."""
        self.conn.close()

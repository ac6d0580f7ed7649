"""Typed control messages between the coordinator and its workers.

Messages are frozen dataclasses sent as one JSON document each, never
pickled, behind the small :class:`Channel` interface so tests can fake it and
another transport can replace the pipe. Every document carries
:data:`PROTOCOL_VERSION`; a document of another version, of an unknown type, or
with a field its type does not have is refused loudly (:class:`ProtocolError`):
this channel is meant to cross hosts one day, and a silently dropped field is a
wrong number later.
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
    """Worker -> coordinator: how far the probe got in this worker.

    ``complete`` covers the scopes this worker decides alone (its fan-out
    subscribers, its requesters); ``missing`` lists some of their unheard
    ``[scope, publisher]`` pairs. ``heard`` lists, per shared group with members
    here, the publishers its members here have heard: only the union over
    workers says whether the group is complete.
    """

    worker: int
    complete: bool
    missing: list[list[int | str]] = field(default_factory=list)
    heard: dict[str, list[int]] = field(default_factory=dict)


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
    counters: dict[str, int] = field(default_factory=dict)
    """A :class:`~msgbench.accounting.counters.Counters` delta, as JSON."""
    latency: str = ""
    latency_raw: str = ""
    publish_delay: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    """Further named histograms (``Buffers.extra``), encoded."""
    events: list[str] = field(default_factory=list)
    members: list[list[int]] = field(default_factory=list)
    """Per shared-group member of this worker: ``[sub id, idle ns in the window, fewest
    tasks it held waiting, MEASURE tasks it received]`` over the interval and the tasks it
    holds waiting at its end (see ``GroupSink.interval``)."""
    depth: dict[str, list[int | None]] = field(default_factory=dict)
    """Per group this worker samples: its queue's ``[waiting, unacked]`` (None: unknown)."""


@dataclass(frozen=True)
class Flow:
    """Worker -> coordinator, several times a second in the measured window: cumulative
    counts for the stall watchdog (:mod:`msgbench.run.stall`)."""

    worker: int
    at_ns: int
    """When the counts were taken (monotonic ns, the worker's clock)."""
    sent: int
    """Messages its publishers handed to the target, warm-up included."""
    arrived: int
    """Messages its subscribers received (deliveries, tasks, replies) plus the tasks they
    finished and the requests its responders answered: any change is progress."""
    listening: int
    """Its subscriptions that are connected and not away (churn)."""


@dataclass(frozen=True)
class PubDone:
    """Worker -> coordinator: its publishers stopped; MEASURE messages per [pub, topic, count]."""

    worker: int
    published: list[list[int]]


@dataclass(frozen=True)
class Done:
    """Worker -> coordinator: final per-subscriber totals; the worker exits next.

    ``received`` holds, per shared-group member here (by subscriber id), the
    encoded set of sequence numbers it received
    (:meth:`~msgbench.accounting.ranges.ReceivedSet.encode`).
    """

    worker: int
    subscribers: list[dict[str, int | str]]
    received: dict[str, dict[str, dict[str, int | str]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Failed:
    """Worker -> coordinator: the worker cannot go on; ``reason`` is one line."""

    worker: int
    reason: str


@dataclass(frozen=True)
class Stop:
    """Coordinator -> worker: stop publishing, send Done and exit."""


@dataclass(frozen=True)
class Kill:
    """Coordinator -> worker (``--kill-worker``): send a last Report and Done, then SIGKILL
    yourself: the transport sees a crash, the ledger keeps every task done before it."""


Message = (Ready | Probe | ProbeStatus | Start | Report | Flow | PubDone | Done | Failed | Stop
           | Kill)
_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (Ready, Probe, ProbeStatus, Start, Report, Flow, PubDone, Done, Failed, Stop,
                Kill)
}


PROTOCOL_VERSION = 4
"""Version of the control messages; 1 was the unversioned protocol before delivery
semantics (counters as one object, probe scopes, group sets); 4 added :class:`Flow`."""


class ProtocolError(Exception):
    """A control message could not be decoded."""


def dumps(msg: Message) -> bytes:
    """Encode a message as JSON bytes."""
    doc = {"v": PROTOCOL_VERSION, "type": type(msg).__name__, **asdict(msg)}
    return json.dumps(doc, separators=(",", ":")).encode()


def loads(data: bytes) -> Message:
    """Decode bytes from :func:`dumps`; raises :class:`ProtocolError` on anything else:
    another protocol version, an unknown type, an unknown field or a missing one."""
    try:
        obj = json.loads(data)
        if not isinstance(obj, dict):
            raise ProtocolError("bad control message: not a JSON object")
        version = obj.pop("v", None)
        if version != PROTOCOL_VERSION:
            raise ProtocolError(f"control protocol version {version!r}; this msgbench speaks "
                                f"{PROTOCOL_VERSION}")
        kind = obj.pop("type", None)
        cls = _TYPES.get(kind) if isinstance(kind, str) else None
        if cls is None:
            raise ProtocolError(f"unknown control message type {kind!r}")
        unknown = sorted(set(obj) - {f.name for f in fields(cls)})
        if unknown:
            raise ProtocolError(f"control message {kind} has unknown fields: {', '.join(unknown)}")
        msg: Message = cls(**obj)
    except (ValueError, TypeError) as exc:
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

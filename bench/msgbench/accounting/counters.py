"""The one set of delivery counters every layer shares.

A worker's report, the aggregator's totals, a second of the series, one
subscriber's (or group's) totals and the run's summary are all a
:class:`Counters`: added field by field, serialised from its fields, so a new
counter is one line here and reaches the report, the file, the console and the
gate without another list to keep in step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar


@dataclass(frozen=True)
class Counters:
    """Message counts of one scope (a worker's delta, a subscriber, a group, a run).

    Totals are non-negative; a delta (``a - b``, a worker's report) may have a
    negative ``gaps`` (a late arrival fills a gap). ``a + b`` adds field by field.
    """

    published: int = 0
    """MEASURE messages sent (requests, for request/reply)."""
    expected: int = 0
    """Deliveries owed for what was published (see ``Topology.owed``)."""
    delivered: int = 0
    """Unique MEASURE deliveries (tasks done, replies matched)."""
    received: int = 0
    """Every payload received, of any kind: what tells the drain the channel is alive."""
    delivered_in_window: int = 0
    """Deliveries that arrived inside the measured window (for throughput)."""
    lost: int = 0
    """Owed but never delivered: set once, from ``expected - delivered``, at the end."""
    gaps: int = 0
    """Sequence numbers skipped so far: the live "lost so far" of fan-out streams."""
    duplicated: int = 0
    """Deliveries of a message already delivered (to the same subscriber or group)."""
    reordered: int = 0
    """Messages that arrived after a later one of their stream."""
    misrouted: int = 0
    """Deliveries on a topic (or to a requester) that was never asked for them."""
    redelivered: int = 0
    """Deliveries the design itself marked as a redelivery (at-least-once: not an error)."""
    orphaned: int = 0
    """Tasks a member held, unfinished, when it was killed (``--kill-worker``)."""
    late: int = 0
    """Replies that came after their request's ``--timeout`` (matched all the same)."""
    timeouts: int = 0
    """Requests with no reply within ``--timeout``: set once, at the end."""
    orphan_replies: int = 0
    """Replies to a request their requester never sent."""
    errors: int = 0
    """What came back to a requester that is no reply at all (too short, not flagged as a
    reply: a request echoed, a corrupt frame)."""
    lost_during_churn: int = 0
    """Part of ``lost`` published while its subscriber was away (``--churn``)."""
    disconnected_subscribers: int = 0
    """Subscribers the transport dropped."""
    latency_out_of_range: int = 0
    """Latency values outside the histogram's range (clamped)."""
    injected_units: int = 0
    """Work units burnt on purpose per delivery (``MSGBENCH_INJECT_WORK`` / ``_COST_NS``, a
    gate's known slowdown): what was done, not only what was asked."""
    injected_cpu_ns: int = 0
    """Thread CPU-ns those units took, measured around each burn."""

    NAMES: ClassVar[tuple[str, ...]]

    def __add__(self, other: Counters) -> Counters:
        return Counters(**{n: getattr(self, n) + getattr(other, n) for n in self.NAMES})

    def __sub__(self, other: Counters) -> Counters:
        return Counters(**{n: getattr(self, n) - getattr(other, n) for n in self.NAMES})

    def __bool__(self) -> bool:
        return any(getattr(self, n) for n in self.NAMES)

    def with_loss(self) -> Counters:
        """These counters with ``lost`` set from ``expected - delivered`` (never negative)."""
        return replace(self, lost=max(0, self.expected - self.delivered))

    def to_json(self) -> dict[str, int]:
        """Every field by name."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Counters:
        """The counters among ``data``'s keys (others ignored, missing ones 0).

        Raises ValueError when a counter is not an integer.
        """
        values = {n: data.get(n, 0) for n in cls.NAMES}
        bad = [n for n, v in values.items() if isinstance(v, bool) or not isinstance(v, int)]
        if bad:
            raise ValueError(f"counter {bad[0]!r} is not an integer: {values[bad[0]]!r}")
        return cls(**values)

    @classmethod
    def total(cls, items: Iterable[Counters]) -> Counters:
        """The sum of ``items`` (zero counters for none)."""
        out = cls()
        for c in items:
            out = out + c
        return out


Counters.NAMES = tuple(f.name for f in fields(Counters))

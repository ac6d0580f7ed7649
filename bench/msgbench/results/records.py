"""The records a result holds per subscriber, per shared group and per leg, and the names of
its legs: schema facts, declared once here.

The writers (the workers' ``Done`` totals, the aggregator's groups) and the readers (the
reports) use these names; :mod:`msgbench.results.validate` checks each record of a file
against these declarations, and :mod:`msgbench.results.fingerprint` hashes them with the
rest of the format.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from msgbench.accounting.counters import Counters

RPC_REQUEST_LEG = "rpc_request_leg"
"""Request sent (intended) -> the responder took it."""
RPC_SERVICE = "rpc_service"
"""The responder's time on it."""
RPC_REPLY_LEG = "rpc_reply_leg"
"""Reply sent -> the requester received it."""
RPC_LEGS = (RPC_REQUEST_LEG, RPC_SERVICE, RPC_REPLY_LEG)
"""The legs of a round trip, in order, as a result's ``legs`` and ``histograms`` name them."""
QUEUE_WAIT = "task_queue_wait"
"""Submit (intended) -> a worker received the task."""
QUEUE_WAIT_UNCORRECTED = "task_queue_wait_uncorrected"
"""Actual send -> received."""
SERVICE = "task_service"
"""The worker's time on the task."""
TASK_HISTOGRAMS = (QUEUE_WAIT, QUEUE_WAIT_UNCORRECTED, SERVICE)
"""The task histograms, as a result's ``legs`` and ``histograms`` name them."""
ALL_LEGS = RPC_LEGS + TASK_HISTOGRAMS
"""Every leg a result may hold."""


@dataclass(frozen=True)
class SubscriberRecord:
    """One entry of a result's ``subscribers``: a subscriber's (a group member's, a
    requester's, a responder's) final totals; its counters stand flattened beside these."""

    sub: int
    topic: int = 0
    group: str = ""
    """The shared group of a ``tasks`` member."""
    role: str = ""
    """``responder`` for an rpc responder's record."""
    answered: int = 0
    """Requests a responder answered."""
    measured: int = 0
    """MEASURE tasks a member received, repeats included."""
    busy_ns: int = 0
    held_max: int = 0
    first_redelivery_ns: int = 0
    counters: Counters = field(default_factory=Counters)


@dataclass(frozen=True)
class GroupRecord:
    """One value of a result's ``groups`` (``tasks``): how a shared group's members fared,
    in member order (see :meth:`~msgbench.results.aggregate.Aggregator.groups`)."""

    members: list[int]
    shares: list[int]
    jain: float
    max_min: float | None
    utilisation: list[float]
    held_max: list[int] = field(default_factory=list)
    recovery_s: float | None = None
    idle_with_backlog_s: list[float] = field(default_factory=list)
    idle_with_backlog_total_s: float = 0.0

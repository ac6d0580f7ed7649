"""Delivery semantics as one object: who listens, what is owed, when the probe is done.

A run has one :class:`~msgbench.api.target.Pattern`; its :class:`Topology` answers, for
that pattern, every question the driver used to answer with an unwritten rule:

* **who listens** (:meth:`Topology.listener`): each subscriber's topic and, for a
  shared pattern, the group it consumes with;
* **what is owed** (:meth:`Topology.owed`): for fan-out every message once to every
  subscriber of its topic; for tasks every message once to the group of its topic
  (whichever member); for request/reply one reply per request, to its requester;
* **when the probe is complete** (:meth:`Topology.probe_complete`): every *scope*
  (subscriber, group, or requester) has heard every publisher it must hear;
* **where accounting happens** (:attr:`Topology.accounting`): per subscriber for
  fan-out and request/reply (each scope sees one sequence per stream, so a skipped
  number is a loss); per group for tasks, where members ship the sets of sequence
  numbers they received and the coordinator takes their union;
* **what counts as a defect** (:meth:`Topology.defects`): an at-least-once design
  redelivers, which is counted as ``redelivered`` and is not an error; a reply
  arriving before an earlier one is the nature of concurrent responders.

Roles: in ``broadcast`` and ``tasks`` the ``pubs`` publish and the ``subs``
subscribe; in ``rpc`` the ``pubs`` are requesters (each also the listener of its
own replies) and the ``subs`` are responders sharing the requests of their topic.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass
from enum import StrEnum

from msgbench.accounting.counters import Counters
from msgbench.api.target import Pattern


class Accounting(StrEnum):
    """Where deliveries are checked against what was owed."""

    PER_SUBSCRIBER = "per-subscriber"
    PER_GROUP = "per-group"


@dataclass(frozen=True)
class Listener:
    """One subscriber's (or responder's) place in the plan."""

    sub_id: int
    topic: int
    group: str | None
    """The shared group it consumes with; None for its own (fan-out) subscription."""


@dataclass(frozen=True)
class Topology:
    """The plan of a run's deliveries; see the module docstring."""

    pattern: Pattern
    pubs: int
    subs: int
    topics: int

    # -- who listens --------------------------------------------------------
    def listener(self, sub_id: int) -> Listener:
        """Where subscriber (or responder) ``sub_id`` listens: topics spread round-robin."""
        topic = sub_id % self.topics
        group = None if self.pattern is Pattern.BROADCAST else group_name(topic)
        return Listener(sub_id, topic, group)

    def listeners_of(self, topic: int) -> int:
        """How many subscribers listen to ``topic``."""
        return len(range(topic, self.subs, self.topics))

    def groups(self) -> dict[str, int]:
        """The shared groups and their topic (none for fan-out)."""
        if self.pattern is Pattern.BROADCAST:
            return {}
        return {group_name(t): t for t in range(self.topics) if self.listeners_of(t)}

    def first_member(self, group: str) -> int:
        """The lowest subscriber id of ``group`` (its topic's number: topics go round-robin)."""
        return self.groups()[group]

    @property
    def accounting(self) -> Accounting:
        """Where accounting happens (see the module docstring)."""
        return Accounting.PER_GROUP if self.pattern is Pattern.TASKS else Accounting.PER_SUBSCRIBER

    @property
    def scopes_are_subscribers(self) -> bool:
        """True when each subscriber sink accounts for itself (fan-out)."""
        return self.pattern is Pattern.BROADCAST

    # -- what is owed -------------------------------------------------------
    def owed(self, published: Mapping[tuple[int, int], int]) -> int:
        """Deliveries owed for ``published`` (MEASURE messages per (publisher, topic))."""
        if self.pattern is Pattern.BROADCAST:
            return sum(n * self.listeners_of(t) for (_, t), n in published.items())
        # tasks: once per message to its topic's group (if anyone listens to it);
        # rpc: one reply per request, if a responder serves its topic.
        return sum(n for (_, t), n in published.items() if self.listeners_of(t))

    def owed_to_requester(self, published: Mapping[tuple[int, int], int], requester: int) -> int:
        """Replies owed to one requester (request/reply only)."""
        return sum(n for (p, t), n in published.items() if p == requester and self.listeners_of(t))

    # -- the probe ----------------------------------------------------------
    def probe_complete(self, heard: Mapping[str, Set[int]]) -> list[tuple[str, int]]:
        """The (scope, publisher) pairs still unheard; empty when the probe is complete.

        ``heard`` maps each scope (:meth:`scopes`) to the publishers heard so far, merged
        over every worker (a requester hears itself: the replies to its own probes).
        """
        missing: list[tuple[str, int]] = []
        for scope in self.scopes():
            got = heard.get(scope, set())
            missing += [(scope, p) for p in self.probe_sources(scope) if p not in got]
        return missing

    def scopes(self) -> list[str]:
        """Every scope that must hear the probe."""
        if self.pattern is Pattern.BROADCAST:
            return [subscriber_scope(s) for s in range(self.subs)]
        if self.pattern is Pattern.TASKS:
            return list(self.groups())
        return [requester_scope(p) for p in range(self.pubs)]

    def probe_sources(self, scope: str) -> range:
        """The publishers ``scope`` must hear: every one, or for a requester itself (a reply
        to its probe proves the way there and back)."""
        if self.pattern is Pattern.RPC:
            me = int(scope[1:])
            return range(me, me + 1)
        return range(self.pubs)

    # -- what counts as a defect ---------------------------------------------
    def defects(self, c: Counters) -> list[str]:
        """One reason per defect in the run's final counters; redelivery is not one."""
        out = []
        if c.lost:
            churn = c.lost_during_churn
            detail = (f" ({churn} while subscribers were away, {c.lost - churn} while connected)"
                      if churn else "")
            what = {Pattern.BROADCAST: "expected deliveries", Pattern.TASKS: "tasks",
                    Pattern.RPC: "requests (no reply)"}[self.pattern]
            out.append(f"{c.lost} of {c.expected} {what} lost{detail}")
        if c.timeouts:
            late = f", {c.late} of them answered late" if c.late else ""
            out.append(f"{c.timeouts} of {c.expected} requests timed out{late}")
        if c.orphan_replies:
            out.append(f"{c.orphan_replies} replies to requests never sent (orphans)")
        if c.errors:
            out.append(f"{c.errors} answers that were no reply at all (errors)")
        if c.duplicated:
            done = {Pattern.BROADCAST: "deliveries duplicated", Pattern.TASKS: "tasks done twice",
                    Pattern.RPC: "duplicate replies"}[self.pattern]
            out.append(f"{c.duplicated} {done}")
        if c.reordered and self.pattern is Pattern.BROADCAST:
            out.append(f"{c.reordered} deliveries reordered")
        if c.misrouted:
            where = ("replies at a requester that did not send them" if self.pattern is Pattern.RPC
                     else "deliveries on a topic never subscribed to")
            out.append(f"{c.misrouted} {where}")
        if c.latency_out_of_range:
            out.append(f"{c.latency_out_of_range} latency values outside the histogram range "
                       "(clamped)")
        return out


def group_name(topic: int) -> str:
    """The shared group of ``topic``."""
    return f"g{topic}"


def subscriber_scope(sub_id: int) -> str:
    """The probe scope of a fan-out subscriber."""
    return f"s{sub_id}"


def requester_scope(pub_id: int) -> str:
    """The probe scope of a requester (it hears its own replies)."""
    return f"r{pub_id}"

"""Where messages go on the broker: exchanges, queues, their flags; shared by both clients.

Broadcast (fan-out): each subscriber has a queue of its own bound to the exchange of
each of its topics, so every subscriber gets every message of its topics.

* ``--amqp-exchange fanout`` (default): one fanout exchange per topic, routing keys unused.
* ``--amqp-exchange topic``: one topic exchange for the run, the topic is the routing key
  and each queue is bound with its topic as the binding key.

A subscriber's queue is transient (server-named, exclusive, auto-delete: plain pub/sub,
gone with the connection) or, with ``--durable``, named after the subscriber
(``msgbench.<run>.sub.<id>``), durable and neither exclusive nor auto-delete: it keeps
collecting while its subscriber is away and is consumed again when the subscriber comes
back (the source text's durable subscriber). ``--quorum`` makes those queues quorum
queues (replicated, always durable).

Every queue a client declares is a :class:`QueueSpec`, so the next patterns only add
specs: a named group's members share one queue (:meth:`Layout.shared_queue`: competing
consumers, each message to one member), and a requester's reply queue is
``amq.rabbitmq.reply-to`` or an exclusive server-named one (as a transient subscriber's).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

EXCHANGE_KINDS = ("fanout", "topic")
PREFIX = "msgbench"


@dataclass(frozen=True)
class QueueSpec:
    """How to declare one queue: ``name`` ``""`` lets the broker name it."""

    name: str
    durable: bool
    exclusive: bool
    auto_delete: bool
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Layout:
    """The run's exchanges, queues and delivery settings (crosses to workers as JSON)."""

    run_id: str
    topics: tuple[str, ...]
    exchange_kind: str = "fanout"
    durable: bool = False
    quorum: bool = False
    persistent: bool = False
    confirm_window: int = 0
    """Publisher confirms: at most this many publishes unconfirmed; 0 = no confirms."""
    prefetch: int = 1000
    """``Basic.Qos`` prefetch count of every consumer (0 = unlimited)."""
    ack: str = "multi"
    """``auto`` (no acks: the broker forgets a message once sent), ``each``, ``multi``."""
    ack_every: int = 250
    """With ``multi``: one multiple-ack per this many deliveries (and before a close)."""
    max_length: int = 0
    """``x-max-length`` of every subscriber queue (oldest dropped beyond it); 0 = none."""

    def exchange(self, topic: str) -> str:
        """The exchange ``topic`` is published to."""
        if self.exchange_kind == "fanout":
            return f"{PREFIX}.{self.run_id}.{topic}"
        return f"{PREFIX}.{self.run_id}"

    def routing_key(self, topic: str) -> str:
        """The routing key of ``topic``'s messages (and its queues' binding key)."""
        return "" if self.exchange_kind == "fanout" else topic

    def exchanges(self) -> list[str]:
        """Every exchange of the run, each once."""
        return list(dict.fromkeys(self.exchange(t) for t in self.topics))

    def sub_queue(self, sub_id: int) -> str:
        """The queue of subscriber ``sub_id``: its name when durable, else ``""`` (the
        broker names it)."""
        return f"{PREFIX}.{self.run_id}.sub.{sub_id}" if self.durable else ""

    def subscriber_queue(self, sub_id: int) -> QueueSpec:
        """Fan-out: the queue of subscriber ``sub_id`` alone (see the module docstring)."""
        transient = not self.durable
        return QueueSpec(self.sub_queue(sub_id), self.durable, transient, transient,
                         self.queue_arguments())

    def shared_queue(self, group: str) -> QueueSpec:
        """The one queue a named group's members consume from (competing consumers):
        named, never exclusive, durable as the run's queues are."""
        return QueueSpec(f"{PREFIX}.{self.run_id}.group.{group}", self.durable, False,
                         not self.durable, self.queue_arguments())

    def queue_arguments(self) -> dict[str, Any]:
        """``x-`` arguments of every queue of the run."""
        args: dict[str, Any] = {}
        if self.quorum:
            args["x-queue-type"] = "quorum"
        if self.max_length:
            args["x-max-length"] = self.max_length
        return args

    @property
    def delivery_mode(self) -> int:
        """2 (persistent: written to disk by a durable queue) or 1 (transient)."""
        return 2 if self.persistent else 1

    def to_json(self) -> dict[str, Any]:
        """For ``Endpoint.data``."""
        d = asdict(self)
        d["topics"] = list(self.topics)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Layout:
        """Inverse of :meth:`to_json`."""
        return cls(**{**d, "topics": tuple(d["topics"])})

    def describe(self) -> dict[str, Any]:
        """What the result records: the settings that change the figures."""
        return {
            "exchange": self.exchange_kind,
            "queues": ("quorum" if self.quorum else "durable") if self.durable
            else "transient (exclusive, auto-delete)",
            "persistent": self.persistent,
            "confirm_window": self.confirm_window,
            "prefetch": self.prefetch,
            "ack": f"multi:{self.ack_every}" if self.ack == "multi" else self.ack,
            "max_length": self.max_length or None,
        }

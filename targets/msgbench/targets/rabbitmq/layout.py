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

Every queue a client declares is a :class:`QueueSpec`:

* tasks: a group's members share one queue per (group, topic) bound to the topic's
  exchange (:meth:`Layout.shared_queue`: competing consumers, each message to one
  member). It is transient by default: named, not durable, auto-delete (gone once its
  last member leaves, so a user's broker keeps nothing); with ``--durable`` it is a
  durable queue (``--quorum``: a quorum queue) that keeps its tasks while no member is
  there. Queue durability costs nothing per message (``--persistent`` messages do), so
  the default measures the same work queue a durable one would, minus the leftovers;
* rpc: requests go through the default exchange to one queue per topic
  (:meth:`Layout.request_queue`), shared by the topic's responders; replies come back
  to ``amq.rabbitmq.reply-to`` (direct reply-to, ``--amqp-reply direct``) or to a
  requester's exclusive, auto-delete, server-named queue (``--amqp-reply queue``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

EXCHANGE_KINDS = ("fanout", "topic")
REPLY_MODES = ("direct", "queue")
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
"""RabbitMQ's pseudo-queue for replies without a reply queue (direct reply-to)."""
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
    nack_every: int = 0
    """Tasks: every this many fresh tasks one is nacked with requeue instead of done; 0 = none."""
    reply: str = "direct"
    """Request/reply: ``direct`` (``amq.rabbitmq.reply-to``) or ``queue`` (a reply queue
    per requester)."""

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

    def shared_queue(self, group: str, topic: str | None = None) -> QueueSpec:
        """The one queue a named group's members consume ``topic`` from (competing
        consumers): named, never exclusive, durable as the run's queues are (transient
        ones auto-delete once their last member leaves)."""
        name = f"{PREFIX}.{self.run_id}.group.{group}" + (f".{topic}" if topic else "")
        return QueueSpec(name, self.durable, False, not self.durable, self.queue_arguments())

    def request_queue(self, topic: str) -> QueueSpec:
        """Request/reply: the queue ``topic``'s requests wait in, shared by its responders
        (declared by requesters and responders alike: whoever comes first)."""
        return QueueSpec(f"{PREFIX}.{self.run_id}.rpc.{topic}", self.durable, False,
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

    def describe_pattern(self, pattern: str) -> dict[str, Any]:
        """What the result records for a tasks or rpc run, beyond :meth:`describe`."""
        queue = (("quorum" if self.quorum else "durable") if self.durable
                 else "transient (auto-delete)")
        if pattern == "tasks":
            return {"group_queue": f"one per (group, topic), {queue}",
                    "nack_every": self.nack_every,
                    "queue_depth": "waiting = ready count (passive queue.declare); unacked "
                                   "not reported (AMQP 0-9-1 does not tell)"}
        if pattern == "rpc":
            return {"reply": self.reply,
                    "reply_to": DIRECT_REPLY_TO if self.reply == "direct"
                    else "exclusive auto-delete queue per requester",
                    "request_queue": f"one per topic, {queue}"}
        return {}

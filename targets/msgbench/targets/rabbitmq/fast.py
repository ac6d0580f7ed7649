"""The default client path (``--amqp-client fast``): every pattern on the lean AMQP
connection of :mod:`~msgbench.targets.rabbitmq.wire`.

Broadcast is :mod:`~msgbench.targets.rabbitmq.client`, tasks
:mod:`~msgbench.targets.rabbitmq.tasks`, request/reply :mod:`~msgbench.targets.rabbitmq.rpc`;
each publisher, subscriber, member, requester and responder has a connection of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

from msgbench.api.target import (
    Client,
    Publisher,
    QueueDepth,
    Requester,
    Service,
    Sink,
    Subscription,
)
from msgbench.targets.rabbitmq.client import FastPublisher, open_subscription
from msgbench.targets.rabbitmq.layout import Layout
from msgbench.targets.rabbitmq.rpc import open_requester, open_responder
from msgbench.targets.rabbitmq.tasks import DepthProbe, open_member
from msgbench.targets.rabbitmq.wire import AmqpUrl


class FastClient(Client):
    """The default client (see the module docstring)."""

    def __init__(self, url: AmqpUrl, layout: Layout) -> None:
        self.url = url
        self.layout = layout
        self.probe = DepthProbe(url, layout)

    async def publisher(self, pub_id: int) -> Publisher:
        """A connection of its own per publisher."""
        return await FastPublisher.open(self.url, self.layout)

    async def subscribe(self, sub_id: int, topics: Sequence[str], sink: Sink,
                        group: str | None = None) -> Subscription:
        """Fan-out: a queue of the subscriber's own (durable ones resume after a churn);
        a group: a member of the group's shared queue per topic."""
        if group is not None:
            return await open_member(self.url, self.layout, group, topics, sink)
        return await open_subscription(self.url, self.layout,
                                       self.layout.subscriber_queue(sub_id), topics, sink)

    async def requester(self, req_id: int, sink: Sink) -> Requester:
        """A requester on every topic (it publishes to whichever the driver names)."""
        return await open_requester(self.url, self.layout, self.layout.topics, sink)

    async def responder(self, resp_id: int, topics: Sequence[str],
                        service: Service) -> Subscription:
        """A consumer of ``topics``' request queues."""
        return await open_responder(self.url, self.layout, topics, service)

    async def queue_depth(self, topic: str, group: str) -> QueueDepth | None:
        """The ready count of ``group``'s queue for ``topic`` (unacked: ``None``)."""
        return await self.probe.depth(topic, group)

    async def close(self) -> None:
        """Drop the depth probe's connection."""
        self.probe.close()

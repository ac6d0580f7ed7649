"""A worker's clients of the target: built from its share of the run, closed at the end.

Broadcast and tasks: one sink and subscription per subscriber (a fan-out
:class:`SubscriberSink`, or a shared group's :class:`GroupSink`), one
:class:`PublisherRunner` per publisher, and a queue-depth sampler for the
groups whose first member lives here. RPC: one :class:`Answerer` responder
per subscriber, and per publisher a requester whose :class:`ReplySink` accounts
the replies.
"""

from __future__ import annotations

import asyncio
import os

from msgbench.api.target import Client, Pattern, Subscription
from msgbench.run.answer import Answerer
from msgbench.run.control import Flow
from msgbench.run.depth import DepthSampler
from msgbench.run.inflight import RequestPublisher
from msgbench.run.publisher import PublisherRunner
from msgbench.run.replies import ReplySink
from msgbench.run.shared import GroupSink
from msgbench.run.sink import Buffers, SubscriberSink
from msgbench.workload.config import RunConfig
from msgbench.workload.topology import Topology
from msgbench.workload.work import parse_slow_worker, parse_work

NS = 1_000_000_000
INJECT_ENV = "MSGBENCH_INJECT_COST_NS"


class Clients:
    """What one worker runs on its target client; see the module docstring."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.sinks: list[SubscriberSink | GroupSink] = []
        self.answerers: list[Answerer] = []
        self.subscriptions: list[Subscription] = []
        self.runners: list[PublisherRunner] = []
        self.depth: DepthSampler | None = None

    async def close(self) -> None:
        """Stop the sampler and the sinks' threads, then close every subscription,
        publisher and the client, in that order."""
        if self.depth is not None:
            await self.depth.stop()
        for s in self.sinks:
            if isinstance(s, GroupSink):
                s.close()
        for a in self.answerers:
            a.close()
        # all at once: against a stopped server each close waits out its own timeout
        await asyncio.gather(*(sub.close() for sub in self.subscriptions))
        await asyncio.gather(*(r.publisher.close() for r in self.runners))
        await self.client.close()

    def flow(self, worker: int, at_ns: int) -> Flow:
        """What the stall watchdog needs of this worker now (:class:`Flow`)."""
        return Flow(worker, at_ns,
                    sent=sum(r.published_total for r in self.runners),
                    # tasks finished count too: a member busy with what it holds
                    # receives nothing meanwhile, and that is slow, not stalled
                    arrived=sum(s.received + s.delivered for s in self.sinks)
                    + sum(a.answered for a in self.answerers),
                    listening=sum(not s.away and s.disconnect_reason is None
                                  for s in self.sinks))


async def build_clients(client: Client, config: RunConfig, topology: Topology, buffers: Buffers,
                        pubs: tuple[int, ...], subs: tuple[int, ...]) -> Clients:
    """Subscribe ``subs`` and open ``pubs`` on ``client`` (see the module docstring); every
    sink records into ``buffers``."""
    clients = Clients(client)
    if topology.pattern is Pattern.RPC:
        await _build_rpc(clients, config, topology, buffers, pubs, subs)
    else:
        await _build_pubsub(clients, config, topology, buffers, pubs, subs)
    return clients


async def _build_pubsub(clients: Clients, config: RunConfig, topology: Topology,
                        buffers: Buffers, pubs: tuple[int, ...], subs: tuple[int, ...]) -> None:
    client = clients.client
    topics = config.topic_names()
    record_raw = config.rate is not None
    for sid in subs:
        where = topology.listener(sid)
        sink: SubscriberSink | GroupSink
        if where.group is None:
            sink = SubscriberSink(sid, where.topic, buffers, config.sub_delay_s,
                                  record_raw=record_raw, inject_cost_ns=_injected_cost_ns())
        else:
            slow = parse_slow_worker(config.slow_worker)
            sink = GroupSink(sid, where.topic, where.group, buffers, record_raw,
                             parse_work(config.work),
                             slow[1] if slow is not None and slow[0] == sid else 1.0)
        clients.sinks.append(sink)
        clients.subscriptions.append(
            await client.subscribe(sid, [topics[where.topic]], sink, group=where.group))
    # the worker of a group's first member samples its queue (one sampler per group)
    firsts = {g: topics[t] for g, t in topology.groups().items()
              if topology.first_member(g) in subs}
    clients.depth = DepthSampler(client, firsts)
    for pid in pubs:
        pub = await client.publisher(pid)
        clients.runners.append(PublisherRunner(pid, pub, config, buffers))


async def _build_rpc(clients: Clients, config: RunConfig, topology: Topology,
                     buffers: Buffers, pubs: tuple[int, ...], subs: tuple[int, ...]) -> None:
    client = clients.client
    topics = config.topic_names()
    for sid in subs:
        answerer = Answerer(sid, parse_work(config.work))
        clients.answerers.append(answerer)
        topic = topology.listener(sid).topic
        clients.subscriptions.append(await client.responder(sid, [topics[topic]], answerer))
    for pid in pubs:
        topic = pid % config.topics
        runner: list[PublisherRunner] = []  # the sink asks it what was sent so far

        def sent(runner: list[PublisherRunner] = runner, topic: int = topic) -> int:
            return runner[0].seq[topic] if runner else 0

        sink = ReplySink(pid, topic, buffers, config.rate is not None,
                         int(config.timeout_s * NS), sent)
        clients.sinks.append(sink)
        requester = await client.requester(pid, sink)
        runner.append(PublisherRunner(
            pid, RequestPublisher(requester, sink, config.inflight, config.timeout_s),
            config, buffers, topics=(topic,)))
        clients.runners += runner


def _injected_cost_ns() -> int:
    """``MSGBENCH_INJECT_COST_NS``: CPU burnt per delivered message, to test regression gates.

    Recorded in the result's environment, so a slowed run never passes for a normal one.
    """
    try:
        return max(0, int(os.environ.get(INJECT_ENV, "0")))
    except ValueError:
        return 0

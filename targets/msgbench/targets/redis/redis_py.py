"""The ``--redis-client redis-py`` path: what a redis-py asyncio application sees.

A batch is one non-transactional pipeline (``--batch 1``: one ``publish`` per
message); subscribers loop over ``PubSub.get_message``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from msgbench.api.target import Client, Publisher, Sink, Subscription, TargetError
from msgbench.kit.redis_cluster import CONNECT_TIMEOUT_S, RedisAddress, SlotMap
from msgbench.targets.redis.watch import Watched, group_by_node

PY_READ_TIMEOUT_S = 1.0
"""redis-py subscribers wake this often when nothing arrives (to notice cancellation)."""


def _py_redis(addr: RedisAddress) -> aioredis.Redis:
    # No retries: a redis-py pub/sub connection would otherwise reconnect and resubscribe
    # silently after Redis dropped it, hiding the disconnect the benchmark must report.
    return aioredis.Redis(
        host=addr.host, port=addr.port, db=addr.db, username=addr.username,
        password=addr.password, ssl=addr.tls,
        ssl_cert_reqs="required" if addr.verify_tls else "none",
        retry=Retry(NoBackoff(), 0), socket_connect_timeout=CONNECT_TIMEOUT_S,
    )


class _PyPublisher(Publisher):
    def __init__(self, clients: list[aioredis.Redis], slots: SlotMap, sharded: bool) -> None:
        self.clients = clients
        self.slots = slots
        self.sharded = sharded

    async def publish(self, topic: str, payloads: Sequence[bytes]) -> None:
        """One ``publish`` per message, or one pipeline per batch."""
        r = self.clients[self.slots.node_for(topic)]
        if len(payloads) == 1:
            await (r.spublish if self.sharded else r.publish)(topic, payloads[0])
            return
        pipe = r.pipeline(transaction=False)
        send = pipe.spublish if self.sharded else pipe.publish
        for p in payloads:
            send(topic, p)
        await pipe.execute()

    async def close(self) -> None:
        """Close the clients."""
        for r in self.clients:
            await r.aclose()


class _PySubscription(Watched):
    def __init__(self, sink: Sink) -> None:
        super().__init__(sink)
        self.pubsubs: list[aioredis.client.PubSub] = []
        self.clients: list[aioredis.Redis] = []
        self.readers: list[asyncio.Task[None]] = []

    async def open(self, addr: RedisAddress, sharded: bool, channels: Sequence[str]) -> None:
        r = _py_redis(addr)
        self.clients.append(r)
        ps = r.pubsub()
        self.pubsubs.append(ps)
        await (ps.ssubscribe if sharded else ps.subscribe)(*channels)
        confirmed = 0
        while confirmed < len(channels):  # "in place" once Redis confirmed every channel
            msg = await ps.get_message(timeout=PY_READ_TIMEOUT_S)
            if msg is None:
                raise TargetError(f"redis-py subscriber not confirmed by {addr.display()}")
            confirmed += msg["type"] in ("subscribe", "ssubscribe")
        self.readers.append(asyncio.ensure_future(self._read(addr, ps)))

    async def _read(self, addr: RedisAddress, ps: aioredis.client.PubSub) -> None:
        deliver = self.sink.deliver
        try:
            while True:
                msg = await ps.get_message(ignore_subscribe_messages=True,
                                           timeout=PY_READ_TIMEOUT_S)
                if msg is not None and msg["type"] in ("message", "smessage"):
                    deliver([msg["data"]])
        except (RedisError, OSError) as exc:
            self.lost(addr, f"redis-py: {type(exc).__name__}: {exc}")

    async def close(self) -> None:
        """Stop the reader tasks and close the connections."""
        await super().close()
        for t in self.readers:
            t.cancel()
        for ps in self.pubsubs:
            with contextlib.suppress(RedisError, OSError):
                await ps.aclose()  # type: ignore[no-untyped-call, unused-ignore]
        for r in self.clients:
            with contextlib.suppress(RedisError, OSError):
                await r.aclose()


class PyClient(Client):
    """redis-py asyncio, as an application would use it."""

    def __init__(self, slots: SlotMap, sharded: bool) -> None:
        self.slots = slots
        self.sharded = sharded

    async def publisher(self, pub_id: int) -> Publisher:
        """One redis-py client per node."""
        clients = [_py_redis(a) for a in self.slots.nodes]
        for r in clients:
            await r.ping()  # fail now, not at the first publish
        return _PyPublisher(clients, self.slots, self.sharded)

    async def subscribe(self, sub_id: int, topics: Sequence[str], sink: Sink,
                        group: str | None = None) -> Subscription:
        """A ``PubSub`` per node serving one of ``topics``."""
        sub = _PySubscription(sink)
        try:
            for node, channels in group_by_node(self.slots, topics).items():
                await sub.open(self.slots.nodes[node], self.sharded, channels)
        except BaseException:
            await sub.close()
            raise
        return sub

"""``redis``: a central broker; ``PUBLISH`` on a channel per topic, subscribers ``SUBSCRIBE``.

Every publisher and subscriber talks to one redis-server (or, with
``--redis-sharded``, to the Redis Cluster node that owns the channel's hash
slot, using ``SPUBLISH`` / ``SSUBSCRIBE``). Without ``--redis-url`` the run
starts its own redis-server (or 3-node cluster) and measures its CPU and
memory; with one it uses that server and never stops it.

Two client paths:

* ``fast`` (default) measures Redis rather than Python: a publisher writes a
  whole batch of pipelined commands in one write and only counts the replies,
  with a bound on outstanding replies as backpressure; a subscriber parses
  all that one socket read brought (hiredis, and a checked positional
  shortcut for runs of same-shaped messages) and hands runs of them to the
  driver as one block (see :mod:`msgbench.kit.resp` and
  :mod:`msgbench.kit.resp_pubsub`).
* ``redis-py`` measures what a redis-py asyncio application sees
  (:mod:`msgbench.targets.redis.redis_py`).

Redis disconnects a subscriber whose output buffer passes
``client-output-buffer-limit pubsub``; the subscriber reports it through
``Sink.disconnected`` and the driver counts what it missed as lost.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence

from msgbench.api.target import (
    JSON,
    Availability,
    Client,
    Endpoint,
    Publisher,
    ServeSpec,
    Sink,
    Subscription,
    Target,
    TargetError,
    TargetOption,
)
from msgbench.kit.procs import which
from msgbench.kit.redis_cluster import (
    RedisAddress,
    SlotMap,
    address,
    connect,
    deploy,
)
from msgbench.kit.redis_server import REDIS_URL_OPTION
from msgbench.kit.resp import (
    RespConnection,
    command_head,
    pipeline,
    pipeline_block,
)
from msgbench.kit.resp_pubsub import PubSubConnection
from msgbench.targets.redis.faults import redis_faults
from msgbench.targets.redis.redis_py import PyClient
from msgbench.targets.redis.watch import Watched, group_by_node

MAX_OUTSTANDING = 4096
"""Publish replies a fast publisher may owe before it waits (half of them, then it goes on):
enough pipelining to keep Redis busy, little enough that closed-loop latency is not queueing
inside msgbench."""
CLIENTS = ("fast", "redis-py")
MAX_BUFFER_LIMIT = 2**63 - 1
"""redis-server keeps the output buffer limits in signed 64-bit integers."""
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3,
          "gb": 1024**3}
_SIZE_RE = re.compile(r"^\d+(?:b|k|kb|m|mb|g|gb)?$", re.IGNORECASE)


def buffer_limit(text: str) -> str:
    """Turn ``--redis-buffer-limit`` into redis-server's ``pubsub HARD SOFT SECONDS``.

    Accepts ``HARD SOFT SECONDS`` (``"1mb 512kb 0"``) or one size (a hard
    limit alone: ``"65536"``, ``"64kb"``). Raises :class:`TargetError`.
    """
    tokens = text.split()
    if len(tokens) == 1:
        tokens = [tokens[0], "0", "0"]
    if (len(tokens) != 3 or not all(_SIZE_RE.match(t) for t in tokens[:2])
            or not tokens[2].isdigit()):
        raise TargetError(f"invalid --redis-buffer-limit {text!r}: use 'HARD SOFT SECONDS' "
                          "(e.g. '1mb 512kb 0') or one size in bytes (e.g. 65536 or 64kb)")
    if max(_bytes(tokens[0]), _bytes(tokens[1]), int(tokens[2])) > MAX_BUFFER_LIMIT:
        raise TargetError(f"--redis-buffer-limit {text!r}: at most {MAX_BUFFER_LIMIT} bytes "
                          "(and seconds)")
    return "pubsub " + " ".join(tokens)


def _bytes(token: str) -> int:
    """A size as redis.conf reads it: ``k`` is 1000, ``kb`` 1024, and so on."""
    t = token.lower()
    unit = t.lstrip("0123456789")
    return int(t[: len(t) - len(unit)]) * _UNITS[unit]


def _verbs(sharded: bool) -> tuple[str, str]:
    return ("SPUBLISH", "SSUBSCRIBE") if sharded else ("PUBLISH", "SUBSCRIBE")


class PipelinedPublisher(Publisher):
    """Writes each batch as one buffer of pipelined commands to the node owning the topic.

    ``head_for(topic)`` is the encoded command up to its last argument, the
    payload (see :func:`~msgbench.kit.resp.command_head`). Replies are only
    counted; the publisher waits while more than :data:`MAX_OUTSTANDING` are owed.
    """

    def __init__(self, conns: list[RespConnection], slots: SlotMap,
                 head_for: Callable[[str], bytes]) -> None:
        self.conns = conns
        self.slots = slots
        self.head_for = head_for
        self.routes: dict[str, tuple[RespConnection, bytes]] = {}

    def _route(self, topic: str) -> tuple[RespConnection, bytes]:
        route = (self.conns[self.slots.node_for(topic)], self.head_for(topic))
        self.routes[topic] = route
        return route

    async def publish(self, topic: str, payloads: Sequence[bytes]) -> None:
        """Write the batch in one go; wait only when too many replies are owed."""
        conn, head = self.routes.get(topic) or self._route(topic)
        await self._send(conn, pipeline(head, payloads), len(payloads))

    async def publish_block(self, topic: str, block: bytes, count: int, size: int) -> None:
        """:meth:`publish` for payloads lying back to back (framed by :func:`pipeline_block`)."""
        conn, head = self.routes.get(topic) or self._route(topic)
        await self._send(conn, pipeline_block(head, block, count, size), count)

    @staticmethod
    async def _send(conn: RespConnection, data: bytes, commands: int) -> None:
        conn.send_counted(data, commands)
        if conn.outstanding > MAX_OUTSTANDING or conn.paused:
            await conn.wait_capacity(MAX_OUTSTANDING)

    async def close(self) -> None:
        """Close every node connection."""
        for c in self.conns:
            c.close()

    @classmethod
    async def open(cls, slots: SlotMap, head_for: Callable[[str], bytes]) -> PipelinedPublisher:
        """Connect to every node of ``slots``."""
        conns: list[RespConnection] = []
        try:
            for a in slots.nodes:
                conns.append(await connect(a, RespConnection))
        except BaseException:
            for c in conns:
                c.close()
            raise
        return cls(conns, slots, head_for)


class _FastSubscription(Watched):
    def __init__(self, sink: Sink) -> None:
        super().__init__(sink)
        self.conns: list[PubSubConnection] = []

    async def open(self, addr: RedisAddress, verb: str, channels: Sequence[str]) -> None:
        conn = await connect(addr, PubSubConnection)
        self.conns.append(conn)
        conn.sink = self.sink
        conn.on_lost = lambda reason: self.lost(addr, reason)
        await conn.subscribe(verb, channels)

    async def close(self) -> None:
        """Close every connection (nothing is reported as lost)."""
        await super().close()
        for c in self.conns:
            c.close()


class FastClient(Client):
    """Pipelined RESP, counted replies, batched parsing (see the module docstring)."""

    def __init__(self, slots: SlotMap, sharded: bool) -> None:
        self.slots = slots
        self.pub_verb, self.sub_verb = _verbs(sharded)

    async def publisher(self, pub_id: int) -> Publisher:
        """One connection per node; topics are routed to their node."""
        verb = self.pub_verb
        return await PipelinedPublisher.open(self.slots, lambda t: command_head(verb, t))

    async def subscribe(self, sub_id: int, topics: Sequence[str], sink: Sink,
                        group: str | None = None) -> Subscription:
        """Subscribe on each node serving one of ``topics``; returns once Redis confirmed."""
        sub = _FastSubscription(sink)
        try:
            for node, channels in group_by_node(self.slots, topics).items():
                await sub.open(self.slots.nodes[node], self.sub_verb, channels)
        except BaseException:
            await sub.close()
            raise
        return sub


class RedisTarget(Target):
    """Redis pub/sub; see the module docstring."""

    name = "redis"
    faults = redis_faults("broadcast")
    description = "central broker: Redis PUBLISH / SUBSCRIBE on a channel per topic"
    options = (
        REDIS_URL_OPTION,
        TargetOption("--redis-client", "Client path: 'fast' (pipelined RESP + hiredis, "
                     "measures Redis) or 'redis-py' (what a redis-py asyncio app sees).",
                     default="fast", choices=CLIENTS),
        TargetOption("--redis-buffer-limit", "client-output-buffer-limit for subscribers "
                     "of the private server: 'HARD SOFT SECONDS' (e.g. '1mb 512kb 0') or "
                     "bytes. Default: the server's own (32mb 8mb 60)."),
        TargetOption("--redis-sharded", "Sharded pub/sub (SPUBLISH / SSUBSCRIBE) on a Redis "
                     "Cluster: the --redis-url node's cluster, else a private 3-node one.",
                     default=False, kind="flag"),
    )

    def check(self) -> Availability:
        """Ready when redis-server is installed; a --redis-url server needs nothing local."""
        path = which("redis-server")
        if path:
            return Availability(True, f"redis-server at {path}, or any server via --redis-url")
        # still runnable against a user's server: serve() says what to do without a URL
        return Availability(True, "redis-server not found: runs only with --redis-url "
                            "redis://host:port, or install it (Debian/Ubuntu: sudo apt-get "
                            "install redis-server)")

    def validate(self, options: Mapping[str, JSON]) -> None:
        """Reject a malformed URL or buffer limit, or a buffer limit for a user's server."""
        url = options.get("redis_url")
        if url:
            address(url)
        limit = options.get("redis_buffer_limit")
        if limit:
            buffer_limit(limit)
            if url:
                raise TargetError("--redis-buffer-limit applies to the private redis-server "
                                  "only; set client-output-buffer-limit on your own server")
        if options.get("redis_client", "fast") not in CLIENTS:
            raise TargetError(f"--redis-client must be one of {', '.join(CLIENTS)}")

    @contextlib.contextmanager
    def serve(self, spec: ServeSpec) -> Iterator[Endpoint]:
        """Start a private redis-server (or cluster) or describe the user's; see the module."""
        opts = spec.options
        sharded = bool(opts.get("redis_sharded"))
        limit = opts.get("redis_buffer_limit")
        extra = ["--client-output-buffer-limit", buffer_limit(limit)] if limit else []
        with deploy(opts.get("redis_url"), sharded=sharded, extra_args=extra) as dep:
            placement = {t: dep.slots.node_for(t) for t in spec.topics}
            info: dict[str, JSON] = {
                **dep.info,
                "client": opts.get("redis_client", "fast"),
                "sharded": sharded,
                "pubsub_buffer_limit": buffer_limit(limit) if limit else "server default",
                "topic_nodes": placement,
            }
            data = {"slots": dep.slots.to_json(), "sharded": sharded,
                    "client": opts.get("redis_client", "fast")}
            yield Endpoint(data=data, processes=dep.processes, info=info)

    def client(self, endpoint: Mapping[str, JSON], options: Mapping[str, JSON]) -> Client:
        """The fast or the redis-py client, as chosen by ``--redis-client``."""
        slots = SlotMap.from_json(endpoint["slots"])
        sharded = bool(endpoint["sharded"])
        if endpoint.get("client") == "redis-py":
            return PyClient(slots, sharded)
        return FastClient(slots, sharded)

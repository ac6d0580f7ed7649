"""``redis-streams``: durable subscribers on Redis Streams; one stream per topic.

Publishers ``XADD`` each message to the topic's stream (pipelined, with an
approximate ``MAXLEN ~ --stream-maxlen`` so memory stays bounded). Every
subscriber reads every entry of its topics with its own cursor: ``XREAD
BLOCK`` with ``COUNT`` from the last id it processed. The cursor lives in the
worker's :class:`StreamsClient` by subscriber id, so a subscriber that the
driver closes and subscribes again (``--churn``) resumes where it left off
and loses nothing, as long as the stream still holds what it missed.

Retention is the one way to lose entries: when a stream was trimmed past a
subscriber's cursor, the driver's sequence accounting counts the missing ones
as lost and the subscriber says why through ``Sink.note``.

Each subscriber's reader and its cursor are :mod:`msgbench.targets.redis.stream_cursor`.
With a group (the ``tasks`` pattern) the members share a stream through a
consumer group instead: ``XREADGROUP`` / ``XACK`` / ``XAUTOCLAIM``, see
:mod:`msgbench.targets.redis.stream_groups`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping, Sequence

from msgbench.api.target import (
    JSON,
    Availability,
    Client,
    Endpoint,
    Pattern,
    Publisher,
    QueueDepth,
    ServeSpec,
    Sink,
    Subscription,
    Target,
    TargetOption,
)
from msgbench.kit.redis_cluster import SlotMap, address, connect, deploy
from msgbench.kit.redis_server import REDIS_URL_OPTION
from msgbench.kit.resp import (
    RespConnection,
    RespError,
    command_head,
)
from msgbench.targets.redis.faults import redis_faults
from msgbench.targets.redis.gauge import Gauge
from msgbench.targets.redis.pubsub import PipelinedPublisher, RedisTarget
from msgbench.targets.redis.queues import AFTER_RUN_TIMEOUT_S
from msgbench.targets.redis.stream_cursor import (
    BLOCK_MS,
    READ_COUNT,
    Cursor,
    Mark,
    StreamSubscription,
    info_fields,
)
from msgbench.targets.redis.stream_groups import (
    GROUP_OPTIONS,
    GroupMember,
    GroupSettings,
    create_groups,
    group_counts,
    group_settings,
    groups_left,
)

DEFAULT_MAXLEN = 1_000_000
MAX_MAXLEN = 2**63 - 1
"""Redis keeps MAXLEN in a signed 64-bit integer."""
FIELD = b"d"
"""The one field of every entry: the payload."""


class _Group(Subscription):
    """The per-node subscriptions of one subscriber."""

    def __init__(self) -> None:
        self.parts: list[Subscription] = []

    async def close(self) -> None:
        """Close every part."""
        for p in self.parts:
            await p.close()


KEY_PREFIX = "msgbench:stream:"
"""Streams live under this prefix, so a user's own keys (``t0`` ...) are never touched."""


def stream_key(topic: str) -> str:
    """The Redis key of ``topic``'s stream."""
    return KEY_PREFIX + topic


class _KeyedPublisher(Publisher):
    """Publishes each topic to its prefixed stream key (routing follows the key's slot)."""

    def __init__(self, inner: Publisher) -> None:
        self.inner = inner

    async def publish(self, topic: str, payloads: Sequence[bytes]) -> None:
        """See :class:`~msgbench.api.target.Publisher`."""
        await self.inner.publish(stream_key(topic), payloads)

    async def close(self) -> None:
        """See :class:`~msgbench.api.target.Publisher`."""
        await self.inner.close()


class StreamsClient(Client):
    """Pipelined ``XADD`` publishers and ``XREAD`` subscribers with durable cursors."""

    def __init__(self, slots: SlotMap, maxlen: int, groups: GroupSettings) -> None:
        self.slots = slots
        self.maxlen = maxlen
        self.groups = groups
        self.cursors: dict[int, Cursor] = {}
        """Per subscriber id: the last entry id processed, per stream."""
        self.gauge = Gauge(slots)

    async def queue_depth(self, topic: str, group: str) -> QueueDepth | None:
        """From ``XINFO GROUPS``: waiting = the group's ``lag`` (entries not yet delivered),
        unacked = its pending entries."""
        key = stream_key(topic)
        try:
            counts = group_counts(await self.gauge.call(key, "XINFO", "GROUPS", key))
        except RespError as exc:
            if "no such key" in str(exc).lower():
                return QueueDepth(0, 0)
            raise
        pending, lag = counts.get(group, (0, 0))
        return QueueDepth(lag, pending)

    async def close(self) -> None:
        """Close the gauge's connections."""
        self.gauge.close()

    async def publisher(self, pub_id: int) -> Publisher:
        """``XADD key MAXLEN ~ N * d <payload>`` for every message, pipelined per batch."""
        maxlen = self.maxlen
        return _KeyedPublisher(await PipelinedPublisher.open(
            self.slots, lambda t: command_head("XADD", t, "MAXLEN", "~", maxlen, "*", FIELD)))

    async def subscribe(self, sub_id: int, topics: Sequence[str], sink: Sink,
                        group: str | None = None) -> Subscription:
        """Start reading; a first subscription starts at the streams' current end.

        With ``group``, join that consumer group as consumer ``c<sub_id>`` instead
        (see :mod:`~msgbench.targets.redis.stream_groups`).
        """
        topics = [stream_key(t) for t in topics]
        if group is not None:
            return await self._join(sub_id, topics, sink, group)
        cursor = self.cursors.get(sub_id)
        parts = _Group()
        by_node: dict[int, list[str]] = {}
        for t in topics:
            by_node.setdefault(self.slots.node_for(t), []).append(t)
        try:
            for node, keys in by_node.items():
                conn = await connect(self.slots.nodes[node], RespConnection)
                try:
                    if cursor is None or any(k not in cursor for k in keys):
                        await self._start_cursor(sub_id, conn, keys)
                except BaseException:
                    conn.close()
                    raise
                parts.parts.append(StreamSubscription(
                    conn, sink, keys, self.cursors[sub_id], self.maxlen))
        except BaseException:
            await parts.close()
            raise
        return parts

    async def _join(self, sub_id: int, keys: list[str], sink: Sink, group: str
                    ) -> Subscription:
        parts = _Group()
        by_node: dict[int, list[str]] = {}
        for k in keys:
            by_node.setdefault(self.slots.node_for(k), []).append(k)
        try:
            for node, node_keys in by_node.items():
                conn = await connect(self.slots.nodes[node], RespConnection)
                try:
                    await create_groups(conn, node_keys, group)
                except BaseException:
                    conn.close()
                    raise
                parts.parts.append(GroupMember(conn, sink, node_keys, group, f"c{sub_id}",
                                               self.groups))
        except BaseException:
            await parts.close()
            raise
        return parts

    async def _start_cursor(self, sub_id: int, conn: RespConnection, keys: list[str]) -> None:
        """A first subscription starts after the newest entry, knowing how many came before."""
        cursor = self.cursors.setdefault(sub_id, {})
        for k in keys:
            if k in cursor:
                continue
            try:
                f = info_fields(await conn.call("XINFO", "STREAM", k))
            except RespError as exc:
                if "no such key" not in str(exc).lower():
                    raise
                cursor[k] = Mark()  # no stream yet: everything will be new
                continue
            added = f.get(b"entries-added")
            cursor[k] = Mark(f[b"last-generated-id"], added if isinstance(added, int) else None)


STREAM_MAXLEN = TargetOption("--stream-maxlen", "Entries each stream keeps (XADD MAXLEN ~ N, "
                             "approximate): a subscriber further behind loses entries.",
                             default=DEFAULT_MAXLEN, kind="int", min=1, max=MAX_MAXLEN)


class RedisStreamsTarget(Target):
    """Redis Streams with durable per-subscriber cursors; see the module docstring."""

    name = "redis-streams"
    description = ("durable subscribers: XADD to a stream per topic, each subscriber "
                   "XREADs from its own cursor and resumes after a disconnect; or a consumer "
                   "group shares it (XREADGROUP / XACK / XAUTOCLAIM)")
    patterns = frozenset({Pattern.BROADCAST, Pattern.TASKS})
    faults = redis_faults("broadcast")
    options = (
        REDIS_URL_OPTION,
        STREAM_MAXLEN,
        *GROUP_OPTIONS,
    )

    def check(self) -> Availability:
        """Same needs as the pub/sub target: redis-server, or a server via --redis-url."""
        return RedisTarget().check()

    def validate(self, options: Mapping[str, JSON]) -> None:
        """Reject a malformed URL or a maxlen below 1."""
        url = options.get("redis_url")
        if url:
            address(url)
        STREAM_MAXLEN.number(options)
        group_settings(options)

    @contextlib.contextmanager
    def serve(self, spec: ServeSpec) -> Iterator[Endpoint]:
        """A private redis-server, or the user's (a cluster's nodes are routed to by key)."""
        maxlen = STREAM_MAXLEN.number(spec.options)
        groups = group_settings(spec.options)
        with deploy(spec.options.get("redis_url")) as dep:
            info: dict[str, JSON] = {
                **dep.info,
                "stream_maxlen": maxlen,
                "trim": "approximate (XADD MAXLEN ~): streams may hold a little more",
                "read_count": READ_COUNT,
                "block_ms": BLOCK_MS,
                "group_count": groups.count,
                "group_ack": "each" if groups.ack_each else "batch",
                "claim_idle_ms": groups.claim_idle_ms,
            }
            data = {"slots": dep.slots.to_json(), "maxlen": maxlen, "count": groups.count,
                    "ack_each": groups.ack_each, "claim_idle_ms": groups.claim_idle_ms}
            yield Endpoint(data=data,
                           processes=dep.processes, info=info)
            left = asyncio.run(groups_left(dep.slots, [stream_key(t) for t in spec.topics]))
            if left:  # a tasks run: what its groups still owed when it ended
                info["groups_left"] = left
            url = spec.options.get("redis_url")
            if url:  # the user's server: take our streams away again
                info["cleanup"] = _delete_streams(str(url), spec.topics)

    def client(self, endpoint: Mapping[str, JSON], options: Mapping[str, JSON]) -> Client:
        """A :class:`StreamsClient` for this worker."""
        groups = GroupSettings(int(endpoint["count"]), bool(endpoint["ack_each"]),
                               int(endpoint["claim_idle_ms"]))
        return StreamsClient(SlotMap.from_json(endpoint["slots"]), int(endpoint["maxlen"]),
                             groups)


def _delete_streams(url: str, topics: Sequence[str]) -> str:
    """Best effort: delete this run's streams from a user's server; say what happened."""
    import redis  # redis-py, only for this one-off clean-up
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=AFTER_RUN_TIMEOUT_S,
                                      socket_timeout=AFTER_RUN_TIMEOUT_S,
                                      retry=Retry(NoBackoff(), 0))
        with contextlib.closing(client):
            for t in topics:  # one key per call: in a cluster the keys live on several nodes
                client.delete(stream_key(t))
    except redis.RedisError as exc:
        return f"streams {KEY_PREFIX}* left on the server: {exc}"
    return f"deleted the run's streams {KEY_PREFIX}*"

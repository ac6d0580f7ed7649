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

With a group (the ``tasks`` pattern) the members share a stream through a
consumer group instead: ``XREADGROUP`` / ``XACK`` / ``XAUTOCLAIM``, see
:mod:`msgbench.targets.redis.stream_groups`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from msgbench.api.target import (
    JSON,
    Availability,
    Capability,
    Client,
    Endpoint,
    Publisher,
    QueueDepth,
    ServeSpec,
    Sink,
    Subscription,
    Target,
    TargetError,
    TargetOption,
)
from msgbench.kit.redis_cluster import SlotMap, address, connect, deploy
from msgbench.kit.redis_server import REDIS_URL_OPTION
from msgbench.kit.resp import (
    REPLY_TIMEOUT_S,
    Arg,
    RespConnection,
    RespError,
    command,
    command_head,
)
from msgbench.targets.redis.faults import redis_faults
from msgbench.targets.redis.gauge import Gauge
from msgbench.targets.redis.pubsub import PipelinedPublisher, RedisTarget
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
READ_COUNT = 1000
"""Entries one ``XREAD`` may return: one delivery batch."""
BLOCK_MS = 1000
"""How long one ``XREAD`` waits on the server when nothing is new."""
FIELD = b"d"
NO_ID = b"0-0"


@dataclass
class Mark:
    """Where one subscriber stands in one stream."""

    id: bytes = NO_ID
    """The last entry id it processed (``XREAD`` continues after it)."""
    added: int | None = 0
    """How many entries the stream had ever received up to ``id`` (``entries-added``, Redis
    7); None when the server does not say."""


Cursor = dict[str, Mark]


def _id(raw: bytes) -> tuple[int, int]:
    ms, _, seq = raw.partition(b"-")
    return int(ms), int(seq or 0)


def _fields(info: Sequence[Any]) -> dict[bytes, Any]:
    return dict(zip(info[::2], info[1::2], strict=False))


def trimmed_past(info: Sequence[Any], mark: Mark) -> int | None:
    """How many entries after ``mark`` the stream dropped, from an ``XINFO STREAM`` reply.

    Trimming removes the oldest entries, so unread ones are gone only when the
    first entry left is newer than the cursor; then every entry left is unread,
    and ``entries-added - length`` entries came before the first one. Returns
    the number dropped (0: none), or None when entries after the cursor may be
    gone but the server does not count them (before Redis 7). Updates
    ``mark.added`` to account for them.
    """
    f = _fields(info)
    first = f.get(b"first-entry")
    if not first or _id(first[0]) <= _id(mark.id):
        return 0
    added = f.get(b"entries-added")
    if not isinstance(added, int) or mark.added is None:
        return None
    before_first = added - int(f[b"length"])
    dropped = max(0, before_first - mark.added)
    mark.added += dropped
    return dropped


class _StreamSubscription(Subscription):
    """Reads the streams of one node for one subscriber until closed."""

    def __init__(self, conn: RespConnection, sink: Sink, keys: list[str], cursor: Cursor,
                 maxlen: int) -> None:
        self.conn = conn
        self.sink = sink
        self.keys = keys
        self.cursor = cursor
        self.maxlen = maxlen
        self.closed = False
        # a read this full means the subscriber lags by a good part of what the stream keeps
        self.behind_at = max(1, min(READ_COUNT, maxlen // 2))
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        conn, cursor, keys, deliver = self.conn, self.cursor, self.keys, self.sink.deliver
        head: tuple[Arg, ...] = ("XREAD", "COUNT", READ_COUNT, "BLOCK", BLOCK_MS, "STREAMS",
                                 *keys)
        wait = BLOCK_MS / 1000 + REPLY_TIMEOUT_S
        behind = False
        try:
            while True:
                # Behind, ask XINFO first, in the same write: Redis runs the two back to back,
                # so nothing is added or trimmed between what XINFO shows and what XREAD reads.
                infos = [conn.send_call(command("XINFO", "STREAM", k)) for k in keys] if behind \
                    else []
                fut = conn.send_call(command(*head, *(cursor[k].id for k in keys)))
                for key, info in zip(keys, infos, strict=False):
                    self._check(key, await asyncio.wait_for(info, wait))
                reply = await asyncio.wait_for(fut, wait)
                behind = False
                if reply is None:
                    continue  # BLOCK timed out: nothing new
                for name, entries in reply:
                    if not entries:
                        continue
                    deliver([e[1][1] for e in entries])
                    # no await between delivering and moving the cursor: a close cannot
                    # separate them, so a resumed subscriber neither skips nor repeats
                    mark = cursor[name.decode()]
                    mark.id = entries[-1][0]
                    if mark.added is not None:
                        mark.added += len(entries)
                    behind |= len(entries) >= self.behind_at
        except TimeoutError:
            if not self.closed:
                self.sink.disconnected(f"redis-streams reader stopped: Redis did not answer "
                                       f"XREAD within {wait:g} s (stopped or hung?)")
        except RespError as exc:
            if not self.closed:
                self.sink.disconnected(f"redis-streams reader stopped: "
                                       f"{exc or type(exc).__name__}")

    def _check(self, key: str, info: Any) -> None:
        dropped = trimmed_past(info, self.cursor[key])
        if dropped != 0:
            self.sink.note(
                f"stream {key} was trimmed past its cursor (--stream-maxlen {self.maxlen}): "
                "entries it had not read were dropped"
            )

    async def close(self) -> None:
        """Stop reading; the cursor stays with the client for a later resubscribe."""
        self.closed = True
        self.task.cancel()
        self.conn.close()
        # wait() rather than awaiting the task: a cancellation of *our* caller must propagate,
        # not be swallowed as if it were the reader's
        await asyncio.wait([self.task])


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
                parts.parts.append(_StreamSubscription(
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
                f = _fields(await conn.call("XINFO", "STREAM", k))
            except RespError as exc:
                if "no such key" not in str(exc).lower():
                    raise
                cursor[k] = Mark()  # no stream yet: everything will be new
                continue
            added = f.get(b"entries-added")
            cursor[k] = Mark(f[b"last-generated-id"], added if isinstance(added, int) else None)


def _maxlen(options: Mapping[str, JSON]) -> int:
    value = options.get("stream_maxlen")
    if value is None:
        return DEFAULT_MAXLEN
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise TargetError(f"--stream-maxlen takes a whole number, got {value!r}") from None
    if not 1 <= n <= MAX_MAXLEN:
        raise TargetError(f"--stream-maxlen must be from 1 to {MAX_MAXLEN}, got {n}")
    return n


class RedisStreamsTarget(Target):
    """Redis Streams with durable per-subscriber cursors; see the module docstring."""

    name = "redis-streams"
    description = ("durable subscribers: XADD to a stream per topic, each subscriber "
                   "XREADs from its own cursor and resumes after a disconnect; or a consumer "
                   "group shares it (XREADGROUP / XACK / XAUTOCLAIM)")
    capabilities = frozenset({Capability.FANOUT, Capability.SHARED})
    faults = redis_faults("broadcast")
    options = (
        REDIS_URL_OPTION,
        TargetOption("--stream-maxlen", "Entries each stream keeps (XADD MAXLEN ~ N, "
                     "approximate): a subscriber further behind loses entries.",
                     default=DEFAULT_MAXLEN, kind="int"),
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
        _maxlen(options)
        group_settings(options)

    @contextlib.contextmanager
    def serve(self, spec: ServeSpec) -> Iterator[Endpoint]:
        """A private redis-server, or the user's (a cluster's nodes are routed to by key)."""
        maxlen = _maxlen(spec.options)
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

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        with contextlib.closing(client):
            for t in topics:  # one key per call: in a cluster the keys live on several nodes
                client.delete(stream_key(t))
    except redis.RedisError as exc:
        return f"streams {KEY_PREFIX}* left on the server: {exc}"
    return f"deleted the run's streams {KEY_PREFIX}*"

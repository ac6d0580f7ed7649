"""``redis-list``: a job queue on Redis lists; the workers of a group compete for its tasks.

Producers ``LPUSH`` each task to its topic's list (pipelined per batch, as the
other Redis targets publish). Each worker takes up to ``--list-count`` tasks at
a time from the other end, in one write: a blocking pop for the first, then
non-blocking ones for the rest (Redis runs a client's pipelined commands after
its blocked one returns, so that is one round trip). Two modes:

* ``brpop`` (at most once): ``BRPOP`` + ``RPOP key n``. A task is off the list
  the moment a worker has it, so a worker that dies loses what it held; the
  driver counts those as lost, exactly.
* ``blmove`` (reliable): ``BLMOVE`` + ``LMOVE``s into the worker's own
  processing list, ``LREM`` from it once the work is done. A worker keeps a
  lease key alive; the coordinator's :class:`~msgbench.targets.redis.reaper.Reaper`
  puts a processing list whose lease expired (``--list-reap-after``) back on
  the queue, and the worker that takes such a task again hands it over with
  ``redelivered=True``.

Every topic has one group in the ``tasks`` pattern, so a topic's list is that
group's queue. Keys are ``msgbench:list:{<topic>}...`` (a hash tag keeps one
topic's lists on one cluster node); on a ``--redis-url`` server they are
deleted before and after the run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

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
    TargetError,
    TargetOption,
)
from msgbench.api.variants import mode_variants
from msgbench.kit.redis_cluster import SlotMap, address, connect, deploy
from msgbench.kit.redis_server import REDIS_URL_OPTION
from msgbench.kit.resp import (
    REPLY_TIMEOUT_S,
    RespConnection,
    RespError,
    command,
    command_head,
    pipeline,
)
from msgbench.targets.redis.faults import redis_faults
from msgbench.targets.redis.gauge import Gauge
from msgbench.targets.redis.pubsub import PipelinedPublisher, RedisTarget
from msgbench.targets.redis.queues import duration_ms, split_marked
from msgbench.targets.redis.reaper import (
    Reaper,
    consumers_key,
    delete_keys,
    lease_key,
    processing_key,
    queue_key,
)

MODES = ("brpop", "blmove")
DEFAULT_COUNT = 10
DEFAULT_REAP_AFTER = "1s"
BLOCK_S = 1
"""How long a blocking pop waits on the server when the queue is empty."""
LEASE_REFRESHES = 4
"""Lease refreshes per lease period: a live worker's lease survives three missed ones."""
REAP_CHECKS = 4
"""Reaper passes per lease period: a dead worker is reaped within 1.25 leases of its death."""


class _KeyedPublisher(Publisher):
    """``LPUSH`` each task of a topic to the topic's queue (routed by the key's slot)."""

    def __init__(self, inner: Publisher) -> None:
        self.inner = inner

    async def publish(self, topic: str, payloads: Sequence[bytes]) -> None:
        """See :class:`~msgbench.api.target.Publisher`."""
        await self.inner.publish(queue_key(topic), payloads)

    async def publish_block(self, topic: str, block: bytes, count: int, size: int) -> None:
        """See :class:`~msgbench.api.target.Publisher`."""
        await self.inner.publish_block(queue_key(topic), block, count, size)

    async def close(self) -> None:
        """See :class:`~msgbench.api.target.Publisher`."""
        await self.inner.close()


class _Worker(Subscription):
    """One competing consumer of one topic's queue (see the module docstring)."""

    def __init__(self, conn: RespConnection, sink: Sink, topic: str, consumer: str,
                 mode: str, count: int) -> None:
        self.conn = conn
        self.sink = sink
        self.closed = False
        q = queue_key(topic)
        self.proc = processing_key(topic, consumer)
        if mode == "brpop":
            self.take = command("BRPOP", q, BLOCK_S)
            self.more = command("RPOP", q, count - 1) if count > 1 else b""
        else:
            self.take = command("BLMOVE", q, self.proc, "RIGHT", "LEFT", BLOCK_S)
            self.more = command("LMOVE", q, self.proc, "RIGHT", "LEFT") * (count - 1)
        self.more_replies = 0 if not self.more else 1 if mode == "brpop" else count - 1
        self.reliable = mode == "blmove"
        self.remove = command_head("LREM", self.proc, -1)
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        conn = self.conn
        wait = BLOCK_S + REPLY_TIMEOUT_S
        take = self.take + self.more
        calls = 1 + self.more_replies
        owed: list[asyncio.Future[Any]] = []
        try:
            while True:
                owed = conn.send_calls(take, calls)
                first, *rest = owed
                head = await asyncio.wait_for(first, wait)
                items = [] if head is None else [head if self.reliable else head[1]]
                for fut in rest:
                    got = await asyncio.wait_for(fut, wait)
                    if isinstance(got, list):
                        items.extend(got)
                    elif got is not None:
                        items.append(got)
                if items:
                    await self._hand_over(items)
        except (RespError, TimeoutError) as exc:
            if not self.closed:
                self.sink.disconnected(f"redis-list worker stopped: {exc or 'timeout'}")
        finally:
            # replies still owed when the worker stops fail with the connection: nobody
            # waits for them any more, so take their errors here rather than leave them unread
            for fut in owed:
                fut.add_done_callback(_retrieve)

    async def _hand_over(self, items: list[bytes]) -> None:
        for payloads, redelivered in split_marked(items):
            await self.sink.handle(payloads, redelivered)
        if self.reliable:
            # done: take them off the processing list (the stored bytes, marks included)
            self.conn.send_counted(pipeline(self.remove, items), len(items))

    async def close(self) -> None:
        """Stop taking tasks; what this worker held stays in its processing list, where the
        reaper finds it once the lease lapses."""
        self.closed = True
        self.task.cancel()
        self.conn.close()
        await asyncio.wait([self.task])


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


class _Leases:
    """Keeps this process's ``blmove`` workers' lease keys alive, on connections of their own
    (a worker's connection sits in a blocking pop), every ``ttl_ms / LEASE_REFRESHES``."""

    def __init__(self, slots: SlotMap, ttl_ms: int) -> None:
        self.slots = slots
        self.ttl_ms = ttl_ms
        self.keys: dict[str, int] = {}
        """Lease key -> node index."""
        self.conns: dict[int, RespConnection] = {}
        self.task: asyncio.Task[None] | None = None

    async def add(self, key: str) -> None:
        """Take the lease now (before the worker holds anything) and keep it alive."""
        node = self.slots.node_for(key)
        conn = self.conns.get(node)
        if conn is None:
            conn = self.conns[node] = await connect(self.slots.nodes[node], RespConnection)
        await conn.call("SET", key, 1, "PX", self.ttl_ms)
        self.keys[key] = node
        if self.task is None:
            self.task = asyncio.ensure_future(self._refresh())

    def drop(self, key: str) -> None:
        """Stop refreshing ``key``: it lapses, and the reaper takes back what its worker held."""
        self.keys.pop(key, None)

    async def _refresh(self) -> None:
        period = self.ttl_ms / LEASE_REFRESHES / 1000
        while True:
            await asyncio.sleep(period)
            for key, node in list(self.keys.items()):
                with contextlib.suppress(RespError):
                    # counted, not awaited: a lost connection shows in the workers' own
                    self.conns[node].send_counted(command("SET", key, 1, "PX", self.ttl_ms), 1)

    async def close(self) -> None:
        """Stop refreshing and close the connections."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.wait([self.task])
        for c in self.conns.values():
            c.close()


class ListClient(Client):
    """Pipelined ``LPUSH`` producers and competing ``BRPOP`` / ``BLMOVE`` workers."""

    def __init__(self, slots: SlotMap, mode: str, count: int, reap_after_ms: int) -> None:
        self.slots = slots
        self.mode = mode
        self.count = count
        self.leases = _Leases(slots, reap_after_ms)
        self.gauge = Gauge(slots)

    async def publisher(self, pub_id: int) -> Publisher:
        """``LPUSH queue <task>`` for every task, pipelined per batch."""
        return _KeyedPublisher(await PipelinedPublisher.open(
            self.slots, lambda key: command_head("LPUSH", key)))

    async def subscribe(self, sub_id: int, topics: Sequence[str], sink: Sink,
                        group: str | None = None) -> Subscription:
        """Join ``group`` as worker ``c<sub_id>`` of the one topic's queue."""
        if group is None:
            raise TargetError("redis-list carries the tasks pattern only (a list is a queue)")
        if len(topics) != 1:
            raise TargetError("a redis-list worker takes the tasks of exactly one topic")
        topic = topics[0]
        consumer = f"c{sub_id}"
        node = self.slots.node_for(queue_key(topic))
        conn = await connect(self.slots.nodes[node], RespConnection)
        try:
            if self.mode == "blmove":
                await self.leases.add(lease_key(topic, consumer))
                await conn.call("SADD", consumers_key(topic), consumer)
        except BaseException:
            conn.close()
            raise
        worker = _Worker(conn, sink, topic, consumer, self.mode, self.count)
        if self.mode != "blmove":
            return worker
        return _Leased(worker, self.leases, lease_key(topic, consumer))

    async def queue_depth(self, topic: str, group: str) -> QueueDepth | None:
        """Waiting: the queue's length; unacked (``blmove``): the tasks in the workers'
        processing lists. ``brpop`` keeps no record of a task once popped: unknown."""
        key = queue_key(topic)
        waiting = int(await self.gauge.call(key, "LLEN", key))
        if self.mode != "blmove":
            return QueueDepth(waiting, None)
        consumers = await self.gauge.call(key, "SMEMBERS", consumers_key(topic))
        unacked = 0
        for c in consumers or []:
            name = c.decode() if isinstance(c, bytes) else str(c)
            unacked += int(await self.gauge.call(key, "LLEN", processing_key(topic, name)))
        return QueueDepth(waiting, unacked)

    async def close(self) -> None:
        """Close the lease and gauge connections."""
        self.gauge.close()
        await self.leases.close()


class _Leased(Subscription):
    """A ``blmove`` worker and its lease: closing it stops the refreshes."""

    def __init__(self, worker: _Worker, leases: _Leases, key: str) -> None:
        self.worker = worker
        self.leases = leases
        self.key = key

    async def close(self) -> None:
        """See :meth:`_Worker.close`."""
        self.leases.drop(self.key)
        await self.worker.close()


LIST_MODE = TargetOption("--list-mode", "'brpop': LPUSH / BRPOP, at most once (a dead "
                         "worker's tasks are lost); 'blmove': BLMOVE into a per-worker "
                         "processing list, LREM after the work, a reaper re-queues a dead "
                         "worker's list.", default=MODES[0], choices=MODES)
LIST_COUNT = TargetOption("--list-count", "Tasks a worker takes at once (its prefetch).",
                          default=DEFAULT_COUNT, kind="int", min=1)
LIST_REAP_AFTER = TargetOption("--list-reap-after", "blmove: a worker's lease; once it lapses "
                               "the reaper puts the worker's processing list back on the "
                               "queue.", default=DEFAULT_REAP_AFTER)


def _options(options: Mapping[str, JSON]) -> tuple[str, int, int]:
    mode = str(LIST_MODE.value(options))
    count = LIST_COUNT.number(options)
    reap = duration_ms(options, "list_reap_after", "--list-reap-after", DEFAULT_REAP_AFTER)
    return mode, count, reap


class RedisListTarget(Target):
    """Redis lists as a job queue; see the module docstring."""

    name = "redis-list"
    description = ("job queue on Redis lists: LPUSH, workers BRPOP (at most once) or BLMOVE "
                   "into a processing list with a reaper (reliable)")
    patterns = frozenset({Pattern.TASKS})
    faults = redis_faults("tasks")
    options = (
        REDIS_URL_OPTION,
        LIST_MODE,
        LIST_COUNT,
        LIST_REAP_AFTER,
    )

    variants = mode_variants(options, "--list-mode")
    """brpop (at most once) and blmove (reliable): two designs."""

    def check(self) -> Availability:
        """Same needs as the pub/sub target: redis-server, or a server via --redis-url."""
        return RedisTarget().check()

    def validate(self, options: Mapping[str, JSON]) -> None:
        """Reject a malformed URL, mode, count or lease."""
        url = options.get("redis_url")
        if url:
            address(url)
        _options(options)

    @contextlib.contextmanager
    def serve(self, spec: ServeSpec) -> Iterator[Endpoint]:
        """A private redis-server or the user's; the reaper runs here for ``blmove``."""
        mode, count, reap_ms = _options(spec.options)
        url = spec.options.get("redis_url")
        with deploy(url) as dep:
            if url:
                delete_keys(dep.slots, spec.topics)  # a previous run's tasks are not ours
            info: dict[str, JSON] = {**dep.info, "list_mode": mode, "list_count": count,
                                     "block_s": BLOCK_S}
            reaper = Reaper(dep.slots, spec.topics, reap_ms / REAP_CHECKS / 1000)
            data = {"slots": dep.slots.to_json(), "mode": mode, "count": count,
                    "reap_after_ms": reap_ms}
            with contextlib.ExitStack() as stack:
                if mode == "blmove":
                    info["reap_after_ms"] = reap_ms
                    info["reap_period_ms"] = reap_ms / REAP_CHECKS
                    stack.enter_context(reaper)
                yield Endpoint(data=data, processes=dep.processes, info=info)
            _after(info, reaper, mode)
            if url:
                info["cleanup"] = delete_keys(dep.slots, spec.topics)

    def client(self, endpoint: Mapping[str, JSON], options: Mapping[str, JSON]) -> Client:
        """A :class:`ListClient` for this worker."""
        return ListClient(SlotMap.from_json(endpoint["slots"]), str(endpoint["mode"]),
                          int(endpoint["count"]), int(endpoint["reap_after_ms"]))


def _after(info: dict[str, JSON], reaper: Reaper, mode: str) -> None:
    """Record what the reaper did and what the lists still hold."""
    import redis

    if mode == "blmove":
        info["reaped"] = reaper.reaped
        info["reap_events"] = list(reaper.events)
        if reaper.error:
            info["reaper_error"] = reaper.error
    try:
        info["left"] = reaper.lengths()
    except redis.RedisError as exc:
        info["left"] = f"unknown: {exc}"

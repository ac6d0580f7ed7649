"""The ``redis-list`` reaper: puts a dead worker's processing list back on its queue.

Runs in the coordinator (a thread, for the run's whole life), because a dead
worker cannot reap itself and the live ones should not spend their time on it.
A worker in ``blmove`` mode keeps a lease key alive (``SET ... PX``, refreshed
several times per lease); every ``period`` the reaper looks at each registered
consumer of each topic and, when its lease has expired, moves everything in
its processing list back to the consuming end of the queue in one Lua script
(atomic: a task is in exactly one list at every moment), each task prefixed
with :data:`~msgbench.targets.redis.queues.REDELIVERED_MARK` so the worker
that takes it says ``redelivered``. What it did is kept for the result. The run's keys
(queues, processing lists, leases) are named here, and :func:`delete_keys` takes them off a
user's server again.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from msgbench.api.target import JSON
from msgbench.kit.redis_cluster import RedisAddress, SlotMap, connect
from msgbench.kit.resp import RespConnection, RespError
from msgbench.targets.redis.queues import AFTER_RUN_TIMEOUT_S

# LPOP takes the newest task of the processing list first and RPUSH puts it at the
# consuming end, so the oldest one ends up nearest that end: order is kept.
REAP_SCRIPT = r"""
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local n = 0
while true do
  local v = redis.call('LPOP', KEYS[2])
  if not v then break end
  if string.byte(v, 1) ~= 255 then v = '\255' .. v end
  redis.call('RPUSH', KEYS[1], v)
  n = n + 1
end
return n
"""
SOCKET_TIMEOUT_S = 5.0
MAX_EVENTS = 1000
"""Reap events kept for the result (a run with more says how many it left out)."""


def queue_key(topic: str) -> str:
    """The list a topic's tasks wait in; the hash tag keeps a topic's keys on one node."""
    return f"msgbench:list:{{{topic}}}"


def processing_key(topic: str, consumer: str) -> str:
    """Where ``consumer`` holds the tasks of ``topic`` it took and has not finished."""
    return f"{queue_key(topic)}:proc:{consumer}"


def lease_key(topic: str, consumer: str) -> str:
    """Exists while ``consumer`` is alive (it refreshes the expiry)."""
    return f"{queue_key(topic)}:alive:{consumer}"


def consumers_key(topic: str) -> str:
    """The set of consumers that ever took tasks of ``topic``."""
    return f"{queue_key(topic)}:consumers"


def _client(addr: RedisAddress, timeout_s: float = SOCKET_TIMEOUT_S) -> redis.Redis:
    return redis.Redis(host=addr.host, port=addr.port, db=addr.db, username=addr.username,
                       password=addr.password, ssl=addr.tls,
                       ssl_cert_reqs="required" if addr.verify_tls else "none",
                       socket_timeout=timeout_s,
                       socket_connect_timeout=timeout_s,
                       # no retries: redis-py's default (3, with backoff) turned one timeout
                       # at a stopped server into ~70 s, and the run hung that long at its end
                       retry=Retry(NoBackoff(), 0))


class Reaper:
    """A thread that re-queues expired consumers' processing lists every ``period_s``."""

    def __init__(self, slots: SlotMap, topics: Sequence[str], period_s: float) -> None:
        self.slots = slots
        self.topics = tuple(topics)
        self.period_s = period_s
        self.events: list[dict[str, JSON]] = []
        self.reaped = 0
        self.error: str | None = None
        self._stop = threading.Event()
        self._clients = [_client(a) for a in slots.nodes]
        self._scripts = [c.register_script(REAP_SCRIPT) for c in self._clients]
        self._thread = threading.Thread(target=self._loop, name="redis-list-reaper",
                                        daemon=True)

    def __enter__(self) -> Reaper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(SOCKET_TIMEOUT_S * 2)
        for c in self._clients:
            with contextlib.suppress(redis.RedisError):
                c.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.sweep()
            except redis.RedisError as exc:
                # the server is gone or stopped: the run's server watch reports that;
                # the reaper says once why it stopped reaping
                self.error = f"reaper stopped: {str(exc).splitlines()[0] if str(exc) else exc}"
                return

    def sweep(self) -> int:
        """One pass over every topic's consumers; returns how many tasks it put back."""
        total = 0
        for topic in self.topics:
            node = self.slots.node_for(queue_key(topic))
            members: Any = self._clients[node].smembers(consumers_key(topic))
            for raw in sorted(members):
                consumer = raw.decode()
                keys = [queue_key(topic), processing_key(topic, consumer),
                        lease_key(topic, consumer)]
                n = int(self._scripts[node](keys=keys))
                if n:
                    total += n
                    self._record(topic, consumer, n)
        return total

    def _record(self, topic: str, consumer: str, n: int) -> None:
        self.reaped += n
        if len(self.events) < MAX_EVENTS:
            self.events.append({"topic": topic, "consumer": consumer, "tasks": n,
                                "monotonic_ns": time.monotonic_ns()})

    def lengths(self) -> dict[str, int]:
        """Tasks left in the queues and in processing lists now (best effort)."""
        queued = held = 0
        clients: dict[int, redis.Redis] = {}
        try:
            for topic in self.topics:
                node = self.slots.node_for(queue_key(topic))
                if node not in clients:
                    clients[node] = _client(self.slots.nodes[node], AFTER_RUN_TIMEOUT_S)
                client = clients[node]
                queued += int(client.llen(queue_key(topic)))
                members: Any = client.smembers(consumers_key(topic))
                for raw in members:
                    held += int(client.llen(processing_key(topic, raw.decode())))
        finally:
            for client in clients.values():
                client.close()
        return {"queued": queued, "in_processing_lists": held}


def delete_keys(slots: SlotMap, topics: Sequence[str]) -> str:
    """Best effort: delete the run's lists from a user's server; say what happened."""
    try:
        return asyncio.run(asyncio.wait_for(_delete_async(slots.nodes, slots, topics),
                                            AFTER_RUN_TIMEOUT_S))
    except TimeoutError:
        return (f"lists msgbench:list:* left on the server: no answer within "
                f"{AFTER_RUN_TIMEOUT_S:g} s")


async def _delete_async(nodes: Sequence[RedisAddress], slots: SlotMap,
                        topics: Sequence[str]) -> str:
    try:
        for t in topics:
            conn = await connect(nodes[slots.node_for(queue_key(t))], RespConnection)
            try:
                members = await conn.call("SMEMBERS", consumers_key(t))
                keys = [queue_key(t), consumers_key(t)]
                for m in members:
                    c = m.decode()
                    keys += [processing_key(t, c), lease_key(t, c)]
                await conn.call("DEL", *keys)
            finally:
                conn.close()
    except RespError as exc:
        return f"lists msgbench:list:* left on the server: {exc}"
    return "deleted the run's lists msgbench:list:*"

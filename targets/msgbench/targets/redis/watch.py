"""What the Redis client paths share: telling why a subscriber lost its connection.

Redis closes a subscriber whose output buffer passed its limit without a word;
:func:`lost_reason` tells that apart from a server that went away, and
:class:`Watched` reports a subscription's loss to its sink once, with that reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from msgbench.api.target import Sink, Subscription
from msgbench.kit.redis_cluster import RedisAddress, SlotMap, connect
from msgbench.kit.resp import RespConnection, RespError

PROBE_TIMEOUT_S = 1.0
"""How long a subscriber that lost its connection checks whether the server is still up."""


async def lost_reason(addr: RedisAddress, reason: str) -> str:
    """Explain a subscriber's lost connection: server gone, or it dropped this client.

    Redis closes a subscriber whose output buffer passed its limit without a
    word, so the only way to tell is whether the server still answers.
    """
    try:
        conn = await connect(addr, RespConnection, timeout=PROBE_TIMEOUT_S)
    except RespError:
        return f"redis-server at {addr.display()} went away ({reason})"
    try:
        await conn.call("PING", timeout=PROBE_TIMEOUT_S)
    except RespError:
        return f"redis-server at {addr.display()} stopped answering ({reason})"
    finally:
        conn.close()
    return ("redis closed the connection while the server is still up "
            "(client-output-buffer-limit pubsub exceeded?)")


class Watched(Subscription):
    """A subscription whose connections report their loss once, with a probed reason."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.closed = False
        self.reported = False
        self.tasks: set[asyncio.Task[None]] = set()

    def lost(self, addr: RedisAddress, reason: str) -> None:
        if self.closed or self.reported:
            return
        self.reported = True
        task = asyncio.ensure_future(self._report(addr, reason))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _report(self, addr: RedisAddress, reason: str) -> None:
        text = await lost_reason(addr, reason)
        if not self.closed:
            self.sink.disconnected(text)

    async def close(self) -> None:
        """Stop reporting; subclasses close their connections."""
        self.closed = True
        for t in list(self.tasks):
            t.cancel()


def group_by_node(slots: SlotMap, topics: Sequence[str]) -> dict[int, list[str]]:
    """``topics`` by the index of the node serving each (one node unless sharded)."""
    by_node: dict[int, list[str]] = {}
    for t in topics:
        by_node.setdefault(slots.node_for(t), []).append(t)
    return by_node

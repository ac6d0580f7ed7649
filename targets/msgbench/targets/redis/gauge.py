"""Asking Redis how deep a task queue is, on a connection of its own.

The driver samples a shared group's queue once a second (``Client.queue_depth``); the
questions go over one extra connection per node, so they never sit in a worker's pipeline
behind its blocking pop.
"""

from __future__ import annotations

from typing import Any

from msgbench.kit.redis_cluster import SlotMap, connect
from msgbench.kit.resp import Arg, RespConnection

GAUGE_TIMEOUT_S = 0.8
"""Longest wait for one answer: the driver gives a sample up after 0.9 s."""


class Gauge:
    """Lazily opened connections (one per node) for depth questions."""

    def __init__(self, slots: SlotMap) -> None:
        self.slots = slots
        self._conns: dict[int, RespConnection] = {}

    async def call(self, key: str, *args: Arg) -> Any:
        """Send ``args`` to the node holding ``key``; its answer."""
        node = self.slots.node_for(key)
        conn = self._conns.get(node)
        if conn is None:
            conn = self._conns[node] = await connect(self.slots.nodes[node], RespConnection)
        return await conn.call(*args, timeout=GAUGE_TIMEOUT_S)

    def close(self) -> None:
        """Close the connections."""
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

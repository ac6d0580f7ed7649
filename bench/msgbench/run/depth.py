"""Sampling the depth of shared groups' queues, once a second, in a worker.

The worker holding a group's first member asks the target (``Client.queue_depth``) how
many of the group's tasks wait in the design and how many are handed out unacknowledged,
off the report path: an answer late by more than :data:`DEPTH_TIMEOUT_S` leaves the
previous sample (or none) and never delays a report.
"""

from __future__ import annotations

import asyncio
import contextlib

from msgbench.api.target import Client, QueueDepth

DEPTH_INTERVAL_S = 1.0
DEPTH_TIMEOUT_S = 0.9
"""Longest wait for one answer: under the interval, so samples never pile up."""


class DepthSampler:
    """Samples ``Client.queue_depth`` for the given (group, topic name) pairs."""

    def __init__(self, client: Client, groups: dict[str, str]) -> None:
        self._client = client
        self._groups = groups
        self._latest: dict[str, QueueDepth] = {}
        self._task: asyncio.Task[None] | None = None
        self.failed: str | None = None
        """Why sampling stopped (one line), if it did."""

    def start(self) -> None:
        """Sample every :data:`DEPTH_INTERVAL_S` until :meth:`stop` (no-op without groups)."""
        if self._groups and self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            for group, topic in self._groups.items():
                try:
                    got = await asyncio.wait_for(self._client.queue_depth(topic, group),
                                                 DEPTH_TIMEOUT_S)
                except TimeoutError:
                    continue
                except Exception as exc:  # a gauge must never take the run down
                    self.failed = f"queue depth of {group}: {type(exc).__name__}: {exc}"
                    return
                if got is None:
                    return  # the design keeps no queue it can measure
                self._latest[group] = got
            await asyncio.sleep(DEPTH_INTERVAL_S)

    def latest(self) -> dict[str, list[int | None]]:
        """The newest sample per group: ``[waiting, unacked]`` (None: unknown)."""
        return {g: [d.waiting, d.unacked] for g, d in self._latest.items()}

    async def stop(self) -> None:
        """Stop sampling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

"""``redis-streams`` with a group: Redis Streams consumer groups as competing consumers.

Each member of a group is a consumer ``c<sub_id>`` of the group on every
stream of its topics. It reads with ``XREADGROUP ... COUNT n`` (``n``:
``--group-count``, its prefetch: entries it holds before it acknowledges any),
hands them to the driver, and only then ``XACK``s them: one ``XACK`` with every
id of the batch (``--group-ack batch``) or one ``XACK`` per entry (``each``),
pipelined with the next read. Every ``--claim-idle / 2`` a member runs
``XAUTOCLAIM`` for entries pending on any consumer for longer than
``--claim-idle`` (a dead worker's, or a stalled one's), takes them over and
hands them on with ``redelivered=True``: at least once. A stalled worker that
wakes up after its entries were claimed delivers them a second time; the
driver counts that as duplicated.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from msgbench.api.target import JSON, Sink, Subscription, TargetOption
from msgbench.kit.redis_cluster import SlotMap, connect
from msgbench.kit.resp import (
    REPLY_TIMEOUT_S,
    RespConnection,
    RespError,
    command,
    command_head,
    pipeline,
)
from msgbench.targets.redis.queues import AFTER_RUN_TIMEOUT_S, duration_ms

ACKS = ("batch", "each")
DEFAULT_COUNT = 10
DEFAULT_CLAIM_IDLE = "1s"
MAX_BLOCK_MS = 1000
"""Longest a read waits on the server; shorter when claims are due more often."""
CLAIMS_PER_IDLE = 2
"""Claim passes per ``--claim-idle``: a dead worker's entries move within 1.5 of it."""


@dataclass(frozen=True)
class GroupSettings:
    """How members of a group read, acknowledge and claim."""

    count: int
    ack_each: bool
    claim_idle_ms: int

    @property
    def claim_period_s(self) -> float:
        """Seconds between a member's claim passes."""
        return self.claim_idle_ms / CLAIMS_PER_IDLE / 1000

    @property
    def block_ms(self) -> int:
        """How long one ``XREADGROUP`` may block."""
        return max(1, min(MAX_BLOCK_MS, round(self.claim_period_s * 1000)))


GROUP_COUNT = TargetOption("--group-count", "tasks: entries a group member reads at once "
                           "(XREADGROUP COUNT, its prefetch).", default=DEFAULT_COUNT,
                           kind="int", min=1)
GROUP_ACK = TargetOption("--group-ack", "tasks: 'batch' (one XACK per read) or 'each' (one "
                         "XACK per entry).", default=ACKS[0], choices=ACKS)
GROUP_OPTIONS = (
    GROUP_COUNT,
    GROUP_ACK,
    TargetOption("--claim-idle", "tasks: members XAUTOCLAIM entries pending longer than "
                 "this (a dead or stalled member's) and deliver them again.",
                 default=DEFAULT_CLAIM_IDLE),
)


def group_settings(options: Mapping[str, JSON]) -> GroupSettings:
    """The group options of a run; raises :class:`TargetError` with one line."""
    return GroupSettings(
        count=GROUP_COUNT.number(options),
        ack_each=GROUP_ACK.value(options) == "each",
        claim_idle_ms=duration_ms(options, "claim_idle", "--claim-idle", DEFAULT_CLAIM_IDLE),
    )


async def create_groups(conn: RespConnection, keys: Sequence[str], group: str) -> None:
    """``XGROUP CREATE key group $ MKSTREAM`` for each key; a group that exists is kept.

    ``$``: the group starts at the stream's end; publishers send nothing owed before
    every subscription is in place, and older entries (a previous run's) are not owed.
    """
    for key in keys:
        try:
            await conn.call("XGROUP", "CREATE", key, group, "$", "MKSTREAM")
        except RespError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


class GroupMember(Subscription):
    """One consumer of a group on the streams of one node (see the module docstring)."""

    def __init__(self, conn: RespConnection, sink: Sink, keys: list[str], group: str,
                 consumer: str, settings: GroupSettings) -> None:
        self.conn = conn
        self.sink = sink
        self.keys = keys
        self.group = group
        self.consumer = consumer
        self.settings = settings
        self.closed = False
        self.ack_heads = {k: command_head("XACK", k, group) for k in keys}
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        s = self.settings
        read = command("XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", s.count,
                       "BLOCK", s.block_ms, "STREAMS", *self.keys, *([">"] * len(self.keys)))
        wait = s.block_ms / 1000 + REPLY_TIMEOUT_S
        next_claim = time.monotonic() + s.claim_period_s
        try:
            while True:
                if time.monotonic() >= next_claim:
                    await self._claim()
                    next_claim = time.monotonic() + s.claim_period_s
                reply = await asyncio.wait_for(self.conn.send_call(read), wait)
                if reply is None:
                    continue  # BLOCK timed out: nothing new
                for name, entries in reply:
                    await self._take(name, entries, False)
        except (RespError, TimeoutError) as exc:
            if not self.closed:
                self.sink.disconnected(f"redis-streams group reader stopped: {exc or 'timeout'}")

    async def _take(self, key: bytes | str, entries: Sequence[Any], redelivered: bool) -> None:
        """Hand ``entries`` over, then acknowledge them (pipelined, replies only counted)."""
        if not entries:
            return
        # an entry without fields was deleted (trimmed) while pending: nothing to hand over
        payloads = [e[1][1] for e in entries if e[1]]
        if len(payloads) < len(entries):
            self.sink.note("pending entries were trimmed from the stream (--stream-maxlen) "
                           "before they could be claimed")
        if payloads:
            await self.sink.handle(payloads, redelivered)
        ids = [e[0] for e in entries]
        name = key if isinstance(key, str) else key.decode()
        if self.settings.ack_each:
            self.conn.send_counted(pipeline(self.ack_heads[name], ids), len(ids))
        else:
            self.conn.send_counted(command("XACK", name, self.group, *ids), 1)

    async def _claim(self) -> None:
        """Take over every entry idle past ``--claim-idle``, ``count`` at a time."""
        s = self.settings
        for key in self.keys:
            start: bytes = b"0-0"
            while True:
                reply = await self.conn.call("XAUTOCLAIM", key, self.group, self.consumer,
                                             s.claim_idle_ms, start, "COUNT", s.count)
                start, entries = reply[0], reply[1]
                if len(reply) > 2 and reply[2]:  # Redis 7: ids deleted while pending
                    self.sink.note("pending entries were trimmed from the stream "
                                   "(--stream-maxlen) before they could be claimed")
                await self._take(key, entries, True)
                if start in (b"0-0", "0-0"):
                    break

    async def close(self) -> None:
        """Stop reading; what this member holds stays pending, for the others to claim."""
        self.closed = True
        self.task.cancel()
        self.conn.close()
        await asyncio.wait([self.task])



def group_counts(reply: Any) -> dict[str, tuple[int, int | None]]:
    """Per group of an ``XINFO GROUPS`` reply: entries pending (delivered, not acknowledged)
    and ``lag`` (entries not yet delivered; None before Redis 7 or when Redis cannot tell)."""
    out: dict[str, tuple[int, int | None]] = {}
    for raw in reply:
        f = dict(zip(raw[::2], raw[1::2], strict=False))
        lag = f.get(b"lag")
        out[f[b"name"].decode()] = (int(f.get(b"pending") or 0),
                                    None if lag is None else int(lag))
    return out


async def groups_left(slots: SlotMap, keys: Sequence[str]) -> dict[str, JSON] | str:
    """Per group, entries still pending (delivered, never acknowledged) and not yet read
    (``lag``, Redis 7) over ``keys``, from ``XINFO GROUPS``; {} when no stream has a group.
    A failure, or no answer within :data:`AFTER_RUN_TIMEOUT_S`, is returned as one line (this is
    a best-effort record for the result)."""
    try:
        return await asyncio.wait_for(_groups_left(slots, keys), AFTER_RUN_TIMEOUT_S)
    except TimeoutError:
        return f"unknown: the server did not answer within {AFTER_RUN_TIMEOUT_S:g} s"


async def _groups_left(slots: SlotMap, keys: Sequence[str]) -> dict[str, JSON] | str:
    out: dict[str, JSON] = {}
    try:
        for key in keys:
            conn = await connect(slots.nodes[slots.node_for(key)], RespConnection)
            try:
                reply = await conn.call("XINFO", "GROUPS", key)
            except RespError as exc:
                if "no such key" in str(exc).lower():
                    continue
                raise
            finally:
                conn.close()
            for name, (pending, lag) in group_counts(reply).items():
                seen = out.setdefault(name, {"pending": 0, "lag": 0})
                assert isinstance(seen, dict)
                seen["pending"] += pending
                seen["lag"] = None if lag is None or seen["lag"] is None else seen["lag"] + lag
    except RespError as exc:
        return f"unknown: {exc}"
    return out

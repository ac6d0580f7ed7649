"""A durable subscriber's reader on Redis Streams: its cursor in each stream, the ``XREAD``
loop that moves it, and what trimming took from under it.

:mod:`msgbench.targets.redis.streams` keeps the cursors per subscriber id across a
resubscribe and builds one :class:`StreamSubscription` per node a subscriber reads from.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from msgbench.api.target import Sink, Subscription
from msgbench.kit.resp import REPLY_TIMEOUT_S, Arg, RespConnection, RespError, command

READ_COUNT = 1000
"""Entries one ``XREAD`` may return: one delivery batch."""
BLOCK_MS = 1000
"""How long one ``XREAD`` waits on the server when nothing is new."""
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


def info_fields(info: Sequence[Any]) -> dict[bytes, Any]:
    """An ``XINFO STREAM`` reply (name, value, name, value ...) as a dict by name."""
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
    f = info_fields(info)
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


class StreamSubscription(Subscription):
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

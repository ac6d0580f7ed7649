"""A small, fast RESP2 client layer on asyncio (uvloop) and hiredis, for the Redis targets.

msgbench measures Redis, not a Python client: a naive redis-py loop costs
several microseconds per message, more than Redis itself. This layer keeps
the client's share small:

* publishers write a whole batch of same-shaped commands (``PUBLISH``,
  ``SPUBLISH``, ``XADD``) in one ``write`` and only *count* the replies; a
  bounded number of outstanding replies is the backpressure
  (:meth:`RespConnection.send_counted`, :meth:`RespConnection.wait_capacity`);
* subscribers parse everything one socket read brought in one go
  (:mod:`msgbench.kit.resp_pubsub`);
* request / response calls (handshake, ``XREAD``, ``CLUSTER SLOTS``) are
  answered in order through futures (:meth:`RespConnection.call`).

Errors are one line: :class:`RespError` for an error reply, a closed
connection or a reply that does not come. Addresses and connecting live in
:mod:`msgbench.kit.redis_cluster`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

import hiredis
import numpy as np

REPLY_TIMEOUT_S = 5.0
"""How long a request / response call waits for its reply."""

_COUNTABLE_BYTES = b":$-0123456789\r\n"
"""Replies made only of these bytes are integers (``:N``) or stream ids (``$15 .. 1-0``):
never an error, whose text has letters."""

Arg = bytes | str | int


class RespError(Exception):
    """A Redis connection or command failed; ``str(exc)`` is one line for the user."""


class ConnectionClosed(RespError):
    """The server closed the connection (or it broke)."""


def _b(arg: Arg) -> bytes:
    if isinstance(arg, bytes):
        return arg
    return str(arg).encode()


def command(*args: Arg) -> bytes:
    """Encode one command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        data = _b(a)
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def command_head(*args: Arg, extra: int = 1) -> bytes:
    """The encoding of a command up to (not including) its last ``extra`` arguments.

    ``command_head("PUBLISH", "t0")`` followed by one encoded bulk string is a
    complete ``PUBLISH t0 <payload>``; see :func:`pipeline`.
    """
    out = [b"*%d\r\n" % (len(args) + extra)]
    for a in args:
        data = _b(a)
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def pipeline(head: bytes, payloads: Sequence[bytes]) -> bytes:
    """Encode ``head + <payload>`` for every payload, as one buffer for one write.

    Payloads of one size (the usual case: the driver pads them) are joined in a
    single C-level ``join``; mixed sizes take the general path.
    """
    if not payloads:
        return b""
    size = len(payloads[0])
    if all(len(p) == size for p in payloads):
        lead = head + b"$%d\r\n" % size
        return lead + (b"\r\n" + lead).join(payloads) + b"\r\n"
    return b"".join([head + b"$%d\r\n" % len(p) + p + b"\r\n" for p in payloads])


def pipeline_block(head: bytes, block: bytes, count: int, size: int) -> bytes:
    """:func:`pipeline` for ``count`` payloads of ``size`` bytes lying back to back in
    ``block``: every command is framed at once with numpy, no payload is cut out."""
    lead = head + b"$%d\r\n" % size
    rows = np.empty((count, len(lead) + size + 2), np.uint8)
    rows[:, : len(lead)] = np.frombuffer(lead, np.uint8)
    rows[:, len(lead) : -2] = np.frombuffer(block, np.uint8, count * size).reshape(count, size)
    rows[:, -2] = 13
    rows[:, -1] = 10
    return rows.tobytes()


def _count_replies(data: bytes) -> tuple[int, int] | None:
    """Count the complete replies at the start of ``data`` without parsing them.

    Works when ``data`` starts at a reply boundary and holds only integer replies
    (``PUBLISH``: one line each) or only non-null bulk strings of digits and dashes
    (``XADD`` ids: a ``$`` line and a data line each). Returns ``(replies, end of the
    last complete one)``, or None when hiredis must look (errors, mixed or other replies).
    """
    if data.translate(None, _COUNTABLE_BYTES):
        return None
    if b"$" not in data:
        cut = data.rfind(b"\n") + 1
        return data.count(b"\n", 0, cut), cut
    if b":" in data or b"$-" in data:
        return None
    # with an odd number of lines the last reply's data line has not arrived yet
    cut = data.rfind(b"$") if data.count(b"\n") % 2 else data.rfind(b"\n") + 1
    return data.count(b"$", 0, cut), cut


class _Discard:
    """Replies owed to fire-and-count commands, merged per run of such commands."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else text


class RespConnection(asyncio.Protocol):
    """One Redis connection: ordered calls, counted pipelines, backpressure, loss.

    Replies are matched to requests in order: a call's future or a run of
    counted commands whose replies are only counted (an error reply among
    them is kept and raised by :meth:`check`).
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.pending: deque[asyncio.Future[Any] | _Discard] = deque()
        self.calls_pending = 0
        self.outstanding = 0
        """Replies owed to counted commands."""
        self.error: RespError | None = None
        """The first error reply to a counted command."""
        self.lost: str | None = None
        """Why the connection ended, once it has."""
        self.closing = False
        self.garbled: str | None = None
        """Set when a reply was not RESP and the connection was aborted for it."""
        self.on_lost: Callable[[str], None] | None = None
        self._tail = b""
        self._paused = False
        self._capacity_limit = 0
        self._capacity: asyncio.Future[None] | None = None

    # -- asyncio.Protocol -------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport; Nagle off so small requests are not held back."""
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail everything still waiting and tell ``on_lost``."""
        if self.closing:
            reason = "closed by msgbench"
        elif self.garbled is not None:
            reason = self.garbled  # we aborted it: say why, not "closed"
        elif exc is not None:
            reason = f"connection to Redis broke: {_one_line(str(exc)) or type(exc).__name__}"
        else:
            reason = "Redis closed the connection"
        self.lost = reason
        err = ConnectionClosed(reason)
        while self.pending:
            head = self.pending.popleft()
            if isinstance(head, asyncio.Future) and not head.done():
                head.set_exception(err)
                # Marked as seen: whoever still awaits it gets the error all the same, but a
                # call nobody awaits any more (a reader cancelled by Ctrl-C) must not end in
                # "Future exception was never retrieved"; the loss itself goes to on_lost.
                head.exception()
        self._wake(err)
        if self.on_lost is not None and not self.closing:
            self.on_lost(reason)

    @property
    def paused(self) -> bool:
        """True while the transport's write buffer is above its high-water mark."""
        return self._paused

    def pause_writing(self) -> None:
        """The transport's buffer is full: :meth:`wait_capacity` waits."""
        self._paused = True

    def resume_writing(self) -> None:
        """The transport drained: let waiting publishers go on."""
        self._paused = False
        self._maybe_wake()

    def data_received(self, data: bytes) -> None:
        """Match replies to requests (see :func:`_count_replies` for the counting shortcut)."""
        if self._tail:
            data = self._tail + data
            self._tail = b""
        if not self.calls_pending and not self.reader.has_data():
            counted = _count_replies(data)
            if counted is not None:
                n, cut = counted
                self._tail = data[cut:]
                self._discarded(n)
                return
        self.reader.feed(data)
        self._parse()

    # -- replies ----------------------------------------------------------
    def _parse(self) -> None:
        gets = self.reader.gets
        while True:
            try:
                reply = gets()
            except hiredis.ProtocolError as exc:
                self._protocol_error(exc)
                return
            if reply is False:
                return
            self._reply(reply)

    def _protocol_error(self, exc: Exception) -> None:
        self.garbled = f"garbled reply from Redis (is it a Redis server?): {_one_line(str(exc))}"
        self.error = RespError(self.garbled)
        if self.transport is not None:
            self.transport.abort()

    def _reply(self, reply: Any) -> None:
        if not self.pending:
            return  # nothing asked for it (a late reply after a timeout): drop it
        head = self.pending[0]
        if isinstance(head, _Discard):
            if isinstance(reply, hiredis.ReplyError) and self.error is None:
                self.error = RespError(f"Redis replied: {_one_line(str(reply))}")
            head.n -= 1
            self.outstanding -= 1
            if head.n == 0:
                self.pending.popleft()
            self._maybe_wake()
            return
        self.pending.popleft()
        self.calls_pending -= 1
        if head.done():
            return
        if isinstance(reply, hiredis.ReplyError):
            head.set_exception(RespError(_one_line(str(reply))))
        else:
            head.set_result(reply)

    def _discarded(self, n: int) -> None:
        """``n`` integer replies arrived for counted commands (no call is waiting)."""
        self.outstanding -= n
        pending = self.pending
        while n and pending:
            head = pending[0]
            assert isinstance(head, _Discard)
            k = min(n, head.n)
            head.n -= k
            n -= k
            if head.n == 0:
                pending.popleft()
        self._maybe_wake()

    # -- requests ---------------------------------------------------------
    def check(self) -> None:
        """Raise the connection's loss or the first error reply to a counted command."""
        if self.lost is not None:
            raise ConnectionClosed(self.lost)
        if self.error is not None:
            raise self.error

    def write(self, data: bytes) -> None:
        """Send raw bytes (already RESP-encoded). Raises when the connection is gone."""
        self.check()
        assert self.transport is not None
        self.transport.write(data)

    def send_counted(self, data: bytes, replies: int) -> None:
        """Send ``replies`` pipelined commands whose replies are only counted."""
        self.write(data)
        self.outstanding += replies
        tail = self.pending[-1] if self.pending else None
        if isinstance(tail, _Discard):
            tail.n += replies
        else:
            self.pending.append(_Discard(replies))

    async def call(self, *args: Arg, timeout: float | None = REPLY_TIMEOUT_S) -> Any:
        """Send one command and return its reply; an error reply raises :class:`RespError`."""
        fut = self.send_call(command(*args))
        if timeout is None:
            return await fut
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise RespError(
                f"Redis did not answer {_b(args[0]).decode(errors='replace')} "
                f"within {timeout:g} s"
            ) from None

    def send_call(self, data: bytes) -> asyncio.Future[Any]:
        """Send one encoded command; the future gets its reply."""
        self.write(data)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending.append(fut)
        self.calls_pending += 1
        return fut

    def send_calls(self, data: bytes, calls: int) -> list[asyncio.Future[Any]]:
        """Send ``calls`` encoded commands in one write; one future per reply, in order."""
        self.write(data)
        loop = asyncio.get_running_loop()
        futs: list[asyncio.Future[Any]] = [loop.create_future() for _ in range(calls)]
        self.pending.extend(futs)
        self.calls_pending += calls
        return futs

    async def wait_capacity(self, limit: int) -> None:
        """Wait while more than ``limit`` counted replies are owed or the socket is full.

        Resumes once half of them arrived (hysteresis keeps writes batched).
        Raises :class:`ConnectionClosed` when the connection goes.
        """
        while self.outstanding > limit or self._paused:
            self.check()
            self._capacity_limit = limit // 2
            self._capacity = asyncio.get_running_loop().create_future()
            await self._capacity
        self.check()

    def _maybe_wake(self) -> None:
        fut = self._capacity
        if fut is not None and not self._paused and self.outstanding <= self._capacity_limit:
            self._capacity = None
            if not fut.done():
                fut.set_result(None)

    def _wake(self, err: BaseException) -> None:
        fut = self._capacity
        self._capacity = None
        if fut is not None and not fut.done():
            fut.set_exception(err)

    def close(self) -> None:
        """Close the connection; nothing more is reported to ``on_lost``."""
        self.closing = True
        if self.transport is not None:
            self.transport.close()



def reply_end(buf: bytes, pos: int) -> int:
    """Where the RESP2 reply starting at ``buf[pos]`` ends, or -1 when it is incomplete.

    Raises ValueError on bytes that are not RESP2.
    """
    eol = buf.find(b"\r\n", pos)
    if eol < 0:
        return -1
    kind = buf[pos]
    if kind in b"+-:":
        return eol + 2
    n = int(buf[pos + 1 : eol])
    if kind == 0x24:  # $ bulk string
        end = eol + 2 if n < 0 else eol + 4 + n
        return end if end <= len(buf) else -1
    if kind == 0x2A:  # * array
        p = eol + 2
        for _ in range(n):
            p = reply_end(buf, p)
            if p < 0:
                return -1
        return p
    raise ValueError(f"not a RESP2 reply: {buf[pos:pos + 20]!r}")

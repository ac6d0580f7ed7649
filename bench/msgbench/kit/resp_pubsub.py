"""The subscriber side of the RESP layer: a subscribed connection that parses whole reads.

Pub/sub pushes of one channel and one payload size are byte-for-byte the same
apart from the payload, so once hiredis has parsed one, the following ones are
located by position, after checking (with numpy, for a whole read at a time)
that every one of them carries exactly that header and the closing CRLF. This
follows RESP's own length framing, so it yields what a full parser would, at a
fraction of the cost. Such a run goes to the sink as one block
(``Sink.deliver_block``: the payloads are not even cut out); anything else
(another channel or size, subscribe confirmations, errors) is framed by
:func:`~msgbench.kit.resp.reply_end` and parsed by hiredis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import hiredis
import numpy as np
import numpy.typing as npt

from msgbench.api.target import Sink
from msgbench.kit.resp import (
    REPLY_TIMEOUT_S,
    RespConnection,
    RespError,
    command,
    reply_end,
)

MESSAGE_KINDS = (b"message", b"smessage")
"""The first element of a pushed message (``SUBSCRIBE`` and ``SSUBSCRIBE``)."""
VECTOR_MIN = 16
"""From this many messages in one read on, their framing is checked with numpy at once."""


class PubSubConnection(RespConnection):
    """A subscribed connection: what one read brings goes to :attr:`sink` in arrival order."""

    def __init__(self) -> None:
        super().__init__()
        self.sink: Sink | None = None
        self._rest = b""
        self._head = b""
        self._head_np: npt.NDArray[np.uint8] = np.zeros(0, np.uint8)
        self._size = 0
        self._stride = -1

    def data_received(self, data: bytes) -> None:
        """Parse all that arrived and deliver it (see the module docstring)."""
        sink = self.sink
        if (len(data) == self._stride and not self._rest and data.startswith(self._head)
                and data.endswith(b"\r\n") and sink is not None):
            # one message per read is the common case at low rates: keep it short
            sink.deliver([data[len(self._head) : -2]])
            return
        buf = self._rest + data if self._rest else data
        try:
            pos = self._scan(buf, sink)
        except (ValueError, hiredis.ProtocolError) as exc:
            self._protocol_error(exc)
            return
        self._rest = buf[pos:]

    def _scan(self, buf: bytes, sink: Sink | None) -> int:
        """Deliver every whole message of ``buf`` (to nobody before :attr:`sink` is set);
        return where the unparsed rest begins."""
        pos, n = 0, len(buf)
        single: list[bytes] = []
        while pos < n:
            head = self._head
            if head and buf.startswith(head, pos):
                stride = self._stride
                whole = self._same(buf, pos, (n - pos) // stride, stride)
                if whole:
                    if sink is not None:
                        if single:  # keep arrival order
                            sink.deliver(single)
                            single = []
                        sink.deliver_block(buf, pos, whole, stride, len(head), self._size)
                    pos += whole * stride
                    continue
            end = reply_end(buf, pos)
            if end < 0:
                break  # the rest of this reply is still on its way
            self._one(buf, pos, end, single)
            pos = end
        if single and sink is not None:
            sink.deliver(single)
        return pos

    def _same(self, buf: bytes, pos: int, k: int, stride: int) -> int:
        """How many of the ``k`` messages from ``pos`` on have the learned header and CRLF."""
        if k < VECTOR_MIN:
            head, good = self._head, 0
            while good < k and buf.startswith(head, pos) and \
                    buf[pos + stride - 2 : pos + stride] == b"\r\n":
                good += 1
                pos += stride
            return good
        rows = np.frombuffer(buf, np.uint8, k * stride, pos).reshape(k, stride)
        ok = (rows[:, : len(self._head)] == self._head_np).all(axis=1)
        ok &= rows[:, -2] == 13
        ok &= rows[:, -1] == 10
        return k if ok.all() else int(ok.argmin())

    def _one(self, buf: bytes, pos: int, end: int, out: list[bytes]) -> None:
        """Parse one whole reply with hiredis; a message also teaches its header."""
        self.reader.feed(buf, pos, end - pos)
        reply = self.reader.gets()
        if type(reply) is list and len(reply) == 3 and reply[0] in MESSAGE_KINDS:
            payload = reply[2]
            out.append(payload)
            self._size = len(payload)
            self._head = buf[pos : end - self._size - 2]
            self._stride = end - pos
            self._head_np = np.frombuffer(self._head, np.uint8)
            return
        self._reply(reply)

    async def subscribe(self, verb: str, channels: Sequence[str]) -> None:
        """``SUBSCRIBE`` / ``SSUBSCRIBE`` each channel; returns once Redis confirmed all."""
        futs = [self.send_call(command(verb, ch)) for ch in channels]
        try:
            replies = await asyncio.wait_for(asyncio.gather(*futs), REPLY_TIMEOUT_S)
        except TimeoutError:
            raise RespError(f"Redis did not confirm {verb} within {REPLY_TIMEOUT_S:g} s") from None
        for r in replies:
            if not (isinstance(r, list) and r and r[0] == verb.lower().encode()):
                raise RespError(f"unexpected reply to {verb}: {r!r}"[:200])

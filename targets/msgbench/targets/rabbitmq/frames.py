"""AMQP 0-9-1 framing for the hot paths: publishes framed a block at a time, deliveries
parsed a socket read at a time.

Every other frame (the handshake, declarations, acks, confirms) is encoded and decoded by
pamqp, the codec aiormq and aio-pika use. A frame is ``type (1) channel (2) size (4)
payload (size) 0xCE``; a message is a ``Basic.Publish`` / ``Basic.Deliver`` method frame,
a content header frame and, for a non-empty body, body frames of at most
``frame_max - 8`` bytes.

Deliveries of one consumer whose bodies have one size have one shape: the consumer tag,
exchange and routing key repeat, the delivery tag is 8 bytes, the properties repeat (a
publisher sends the same ones). :func:`parse` finds runs of such messages lying at a
fixed stride in the buffer and checks every frame boundary of every item with numpy, so
the sink gets them as one block (:meth:`~msgbench.api.target.Sink.deliver_block`) without
a Python loop per message.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pamqp import commands, frame, header
from pamqp.base import Frame

FRAME_END = 0xCE
FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
FRAME_OVERHEAD = 8
"""Bytes a frame adds around its payload: 7 of header, 1 end marker."""
BASIC_CLASS = 60
DELIVER_METHOD = 60
_FRAME_HEAD = struct.Struct(">BHI")
_CLASS_METHOD = struct.Struct(">HH")
_TAG = struct.Struct(">Q")
_DELIVER_ID = _CLASS_METHOD.pack(BASIC_CLASS, DELIVER_METHOD)


class FrameError(Exception):
    """The byte stream is not AMQP framing (a broken or hostile peer)."""


def method_frame(channel: int, method: Frame) -> bytes:
    """One method frame, encoded by pamqp."""
    return frame.marshal(method, channel)


def publish_head(channel: int, exchange: str, routing_key: str, size: int,
                 properties: commands.Basic.Properties) -> bytes:
    """The bytes of one publish of a ``size``-byte body up to the body itself.

    That is the ``Basic.Publish`` method frame, the content header frame and the
    body frame's 7-byte header; a body frame follows with the body and ``0xCE``.
    Only valid for ``size <= frame_max - 8`` (one body frame) and ``size > 0``.
    """
    method = frame.marshal(commands.Basic.Publish(exchange=exchange, routing_key=routing_key),
                           channel)
    head = frame.marshal(header.ContentHeader(0, size, properties), channel)
    return method + head + _FRAME_HEAD.pack(FRAME_BODY, channel, size)


def publish_block(head: bytes, block: bytes | memoryview, count: int, size: int) -> bytes:
    """``count`` publishes of the ``size``-byte bodies lying back to back in ``block``.

    ``head`` comes from :func:`publish_head` for this size. One numpy copy lays
    out every item; the result is what ``count`` calls of :func:`publish_one` join to.
    """
    stride = len(head) + size + 1
    out = np.empty((count, stride), dtype=np.uint8)
    out[:, : len(head)] = np.frombuffer(head, dtype=np.uint8)
    out[:, len(head) : len(head) + size] = np.frombuffer(
        block, dtype=np.uint8, count=count * size).reshape(count, size)
    out[:, -1] = FRAME_END
    return out.tobytes()


def publish_one(channel: int, exchange: str, routing_key: str, body: bytes,
                properties: commands.Basic.Properties, frame_max: int) -> bytes:
    """One publish of any body size (split into body frames of ``frame_max - 8`` bytes)."""
    parts = [frame.marshal(commands.Basic.Publish(exchange=exchange, routing_key=routing_key),
                           channel),
             frame.marshal(header.ContentHeader(0, len(body), properties), channel)]
    step = frame_max - FRAME_OVERHEAD
    for pos in range(0, len(body), step):
        chunk = body[pos : pos + step]
        parts.append(_FRAME_HEAD.pack(FRAME_BODY, channel, len(chunk)) + chunk
                     + bytes((FRAME_END,)))
    return b"".join(parts)


@dataclass(frozen=True)
class Shape:
    """Where one delivery's pieces lie within it (all offsets from its first byte)."""

    stride: int
    """Bytes of the whole message: method, header and its one body frame."""
    tag_at: int
    """Offset of the 8-byte delivery tag."""
    body_at: int
    """Offset of the body."""
    body_size: int
    header_at: int
    body_frame_at: int


class DeliverySink:
    """What :func:`parse` hands deliveries to; implemented by the subscription."""

    def block(self, buf: bytes, first: int, count: int, shape: Shape) -> None:
        """``count`` one-frame deliveries of ``shape`` from ``buf[first:]`` on."""
        raise NotImplementedError

    def one(self, body: bytes, tag: int, redelivered: bool = False) -> None:
        """A delivery that is not part of a run (its body split over several frames);
        ``redelivered`` is the ``Basic.Deliver`` flag (the broker delivers it again)."""
        raise NotImplementedError

    def method(self, channel: int, value: Frame) -> None:
        """Any method frame other than ``Basic.Deliver``, decoded by pamqp."""
        raise NotImplementedError


def _shape_at(buf: bytes, pos: int, end: int) -> Shape | None:
    """The shape of the complete one-body-frame delivery at ``pos``, if there is one."""
    if pos + 7 > end:
        return None
    _, _, msize = _FRAME_HEAD.unpack_from(buf, pos)
    hpos = pos + 7 + msize + 1
    if hpos + 7 + 12 > end:
        return None
    ctag_len = buf[pos + 11]
    tag_at = 12 + ctag_len
    htype, _, hsize = _FRAME_HEAD.unpack_from(buf, hpos)
    if htype != FRAME_HEADER or buf[hpos - 1] != FRAME_END:
        raise FrameError("a Basic.Deliver not followed by its content header")
    (body_size,) = _TAG.unpack_from(buf, hpos + 7 + 4)
    bpos = hpos + 7 + hsize + 1
    if bpos > end:
        return None
    if body_size == 0:
        return Shape(bpos - pos, tag_at, bpos - pos, 0, hpos - pos, bpos - pos)
    if bpos + 7 > end:
        return None
    btype, _, bsize = _FRAME_HEAD.unpack_from(buf, bpos)
    if btype != FRAME_BODY:
        raise FrameError("a content header not followed by its body")
    if bsize != body_size:
        return Shape(0, tag_at, 0, body_size, hpos - pos, bpos - pos)  # split body: slow path
    stride = bpos + 7 + bsize + 1 - pos
    if pos + stride > end:
        return None
    return Shape(stride, tag_at, bpos + 7 - pos, body_size, hpos - pos, bpos - pos)


def _run_length(buf: bytes, pos: int, end: int, shape: Shape) -> int:
    """How many items from ``pos`` on have ``shape`` (the first one does), checked with
    numpy at every frame boundary: frame heads, class and method, tag length, body size,
    end markers."""
    n = (end - pos) // shape.stride
    if n <= 1:
        return n
    rows = np.frombuffer(buf, dtype=np.uint8, count=n * shape.stride, offset=pos
                         ).reshape(n, shape.stride)
    h, b = shape.header_at, shape.body_frame_at
    cols = [*range(0, 12), h - 1, *range(h, h + 7), *range(h + 11, h + 19),
            b - 1, *range(b, b + 7), shape.stride - 1]
    same = (rows[:, cols] == rows[0, cols]).all(axis=1)
    bad = np.flatnonzero(~same)
    return int(bad[0]) if bad.size else n


def parse(buf: bytes, sink: DeliverySink, frame_max: int,
          on_heartbeat: Callable[[], None] | None = None) -> int:
    """Consume every complete frame (or message) of ``buf``; return the bytes used.

    Deliveries go to ``sink`` (runs as blocks), other methods decoded by pamqp. A
    delivery is only taken once all its frames are in ``buf``, so the caller keeps
    ``buf[used:]`` and calls again with more data.
    """
    pos, end = 0, len(buf)
    while pos + 7 <= end:
        ftype, channel, size = _FRAME_HEAD.unpack_from(buf, pos)
        if size > frame_max:
            raise FrameError(f"frame of {size} bytes exceeds frame_max {frame_max}")
        if pos + 8 + size > end:
            break
        if buf[pos + 7 + size] != FRAME_END:
            raise FrameError("frame end marker missing")
        if ftype == FRAME_METHOD and buf[pos + 7 : pos + 11] == _DELIVER_ID:
            shape = _shape_at(buf, pos, end)
            if shape is None:
                break  # the rest of the message has not arrived
            if shape.stride == 0:
                used = _split_delivery(buf, pos, end, shape)
                if used == 0:
                    break
                body = b"".join(_bodies(buf, pos + shape.body_frame_at, pos + used))
                sink.one(body, _TAG.unpack_from(buf, pos + shape.tag_at)[0],
                         bool(buf[pos + shape.tag_at + 8] & 1))
                pos += used
                continue
            n = _run_length(buf, pos, end, shape)
            sink.block(buf, pos, n, shape)
            pos += n * shape.stride
            continue
        if ftype == FRAME_METHOD:
            _, _, value = frame.unmarshal(buf[pos : pos + 8 + size])
            if not isinstance(value, Frame):
                raise FrameError(f"a method frame decoded as {type(value).__name__}")
            sink.method(channel, value)
        elif ftype == FRAME_HEARTBEAT:
            if on_heartbeat is not None:
                on_heartbeat()
        else:
            raise FrameError(f"unexpected frame type {ftype} outside a delivery")
        pos += 8 + size
    return pos


def _bodies(buf: bytes, pos: int, end: int) -> list[bytes]:
    out = []
    while pos < end:
        _, _, size = _FRAME_HEAD.unpack_from(buf, pos)
        out.append(buf[pos + 7 : pos + 7 + size])
        pos += 8 + size
    return out


def _split_delivery(buf: bytes, pos: int, end: int, shape: Shape) -> int:
    """Bytes of the delivery at ``pos`` whose body spans several frames; 0 if incomplete."""
    need, p = shape.body_size, pos + shape.body_frame_at
    while need > 0:
        if p + 7 > end:
            return 0
        btype, _, size = _FRAME_HEAD.unpack_from(buf, p)
        if btype != FRAME_BODY:
            raise FrameError("a message body frame expected")
        if p + 8 + size > end:
            return 0
        need -= size
        p += 8 + size
    return p - pos


def tag_of(buf: bytes, item: int, shape: Shape) -> int:
    """The delivery tag of the delivery starting at ``item``."""
    return int(_TAG.unpack_from(buf, item + shape.tag_at)[0])


def tags_and_flags(buf: bytes, first: int, count: int, shape: Shape
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The delivery tags (uint64) and ``redelivered`` flags (bool) of a run of ``count``
    deliveries of ``shape`` from ``buf[first:]`` on, read with numpy in one go.

    :func:`parse` does not compare the flag across a run, so a run may mix first and
    repeated deliveries; the caller splits it where the flag changes."""
    rows = np.frombuffer(buf, dtype=np.uint8, count=count * shape.stride, offset=first
                         ).reshape(count, shape.stride)
    at = shape.tag_at
    tags = rows[:, at : at + 8].copy().view(">u8").ravel().astype(np.uint64)
    return tags, (rows[:, at + 8] & 1).astype(bool)


_PROP_SHORTSTR = (15, 14)
"""Property bits before ``reply_to`` holding a short string: content type, encoding."""
_BIT_HEADERS, _BIT_MODE, _BIT_PRIORITY, _BIT_CORRELATION, _BIT_REPLY_TO = 13, 12, 11, 10, 9


def reply_to_at(buf: bytes, item: int, shape: Shape) -> bytes:
    """The ``reply_to`` property of the one-frame delivery at ``item`` (``b""`` if none).

    Reads the content header's property flags and skips the fields that precede
    ``reply_to`` (AMQP orders properties by flag bit, high bit first): content type and
    encoding (short strings), headers (a table: 4-byte length), delivery mode and
    priority (octets), correlation id (short string)."""
    h = item + shape.header_at + 7
    flags = int.from_bytes(buf[h + 12 : h + 14], "big")
    if not flags >> _BIT_REPLY_TO & 1:
        return b""
    p = h + 14
    for bit in _PROP_SHORTSTR:
        if flags >> bit & 1:
            p += 1 + buf[p]
    if flags >> _BIT_HEADERS & 1:
        p += 4 + int.from_bytes(buf[p : p + 4], "big")
    p += (flags >> _BIT_MODE & 1) + (flags >> _BIT_PRIORITY & 1)
    if flags >> _BIT_CORRELATION & 1:
        p += 1 + buf[p]
    return bytes(buf[p + 1 : p + 1 + buf[p]])

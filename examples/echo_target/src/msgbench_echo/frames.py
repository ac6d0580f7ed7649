"""The echo server's wire format: length-prefixed frames, one message each.

A frame is ``u32 length (big-endian) | op (1 byte) | fields``; a name field (topic, group)
is ``u8 length | bytes``, a connection id is ``u32``, and a payload runs to the frame's end.
The driver's payloads are opaque bytes here: nothing in this package reads them.

Client to server::

    SUB topic                 broadcast: get every PUB of topic
    JOIN topic group          tasks: share topic's PUBs with group's other members
    PUB topic payload
    SERVE topic               rpc: answer REQs of topic, shared with its other responders
    REQ topic payload         the server remembers who asked (the return address)
    REP conn payload          a responder's answer to the request that came as CALL conn

Server to client::

    MSG payload               a PUB to a subscriber or member, or a REP to its requester
    CALL conn payload         a request, with the requester's connection id
    OK                        a SUB, JOIN or SERVE is in place (one each, in order)
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

SUB, JOIN, PUB, SERVE, REQ, REP, MSG, CALL, OK = range(1, 10)
HEAD = struct.Struct(">IB")
"""Length (of op + fields) and op."""
CONN = struct.Struct(">I")
MAX_FRAME = 16 * 1024 * 1024
"""Largest frame either side accepts: beyond it the peer is broken, not slow."""


class FrameError(Exception):
    """A frame that breaks the format (too long, a name past its end, an unknown op)."""


def name(text: str) -> bytes:
    """A name field: its length byte, then its UTF-8 bytes (at most 255)."""
    raw = text.encode()
    if len(raw) > 255:
        raise FrameError(f"name longer than 255 bytes: {text[:40]!r}...")
    return bytes((len(raw),)) + raw


def frame(op: int, body: bytes) -> bytes:
    """One frame of ``op`` with ``body`` (its fields, already encoded)."""
    return HEAD.pack(len(body) + 1, op) + body


def frames(op: int, prefix: bytes, payloads: Sequence[bytes]) -> bytes:
    """The frames of ``op`` for each payload, each body ``prefix + payload``, joined: one
    write for a batch."""
    return b"".join(HEAD.pack(len(prefix) + len(p) + 1, op) + prefix + p for p in payloads)


def read_name(body: bytes, at: int) -> tuple[str, int]:
    """The name field at ``at`` of ``body`` and the offset after it."""
    if at >= len(body) or at + 1 + body[at] > len(body):
        raise FrameError("a name runs past the end of its frame")
    end = at + 1 + body[at]
    return body[at + 1 : end].decode(errors="replace"), end


def split(buf: bytearray) -> list[tuple[int, bytes]]:
    """Take every whole frame off the front of ``buf`` as ``(op, body)``; what remains is the
    start of the next frame. Raises :class:`FrameError` on a length beyond :data:`MAX_FRAME`."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while len(buf) - pos >= HEAD.size:
        length, op = HEAD.unpack_from(buf, pos)
        if not 1 <= length <= MAX_FRAME:
            raise FrameError(f"frame length {length} out of range")
        end = pos + 4 + length
        if end > len(buf):
            break
        out.append((op, bytes(buf[pos + HEAD.size : end])))
        pos = end
    del buf[:pos]
    return out

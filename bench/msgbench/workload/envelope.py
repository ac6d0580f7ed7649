"""The fixed header the driver puts at the start of every payload: its one home.

Layout (little endian, 32 bytes)::

    kind u8 | reserved u8 | topic u16 | publisher u32 | seq u64 | intended_ns u64 | sent_ns u64

``intended_ns`` is when the open-loop schedule meant the message to leave;
``sent_ns`` is when it actually did. Both are ``time.monotonic_ns()`` values,
which on Linux share one clock across all processes of a host.

A reply (request/reply) is the request's header (same kind, topic, publisher =
the requester, seq = the request's: the correlation id, intended and sent times)
with :data:`REPLY_FLAG` set in the reserved byte, followed by the responder's
extension (24 bytes)::

    responder u32 | reserved u32 | received_ns u64 | replied_ns u64

Nothing outside this module knows these offsets: :mod:`msgbench.accounting.batch`
takes its dtype and masks from here, and targets never read a payload.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

HEADER = struct.Struct("<BxHIQQQ")
HEADER_SIZE = HEADER.size
REPLY_EXT = struct.Struct("<I4xQQ")
REPLY_SIZE = HEADER_SIZE + REPLY_EXT.size
"""Smallest payload that carries a reply: header plus the responder's extension."""
REPLY_FLAG = 0x01
"""Bit of the header's reserved byte (offset 1) that marks a reply."""

KIND_MASK = 0xFF
TOPIC_SHIFT = 16
TOPIC_MASK = 0xFFFF
PUB_SHIFT = 32
KIND_AND_TOPIC = 0xFFFF00FF
"""The header's first 8 bytes read as one little-endian integer (field ``head`` of
:func:`header_dtype`): kind in bits 0-7, the reserved byte, the topic in bits 16-31 and the
publisher above; ``head >> TOPIC_SHIFT`` is the stream key ``publisher << 16 | topic``."""


class Kind(IntEnum):
    """What a message is for; only MEASURE messages count towards the result."""

    PROBE = 1
    WARMUP = 2
    MEASURE = 3


@dataclass(frozen=True)
class Envelope:
    """A decoded header."""

    kind: Kind
    topic: int
    publisher: int
    seq: int
    intended_ns: int
    sent_ns: int


def padding(size: int) -> bytes:
    """Return the zero bytes that pad a header to ``size`` bytes in total.

    Raises ValueError when ``size`` cannot hold the header.
    """
    if size < HEADER_SIZE:
        raise ValueError(f"message size {size} B is smaller than the {HEADER_SIZE} B header")
    return bytes(size - HEADER_SIZE)


def encode(env: Envelope, pad: bytes = b"") -> bytes:
    """Encode ``env`` followed by ``pad`` (see :func:`padding`)."""
    return (
        HEADER.pack(env.kind, env.topic, env.publisher, env.seq, env.intended_ns, env.sent_ns) + pad
    )


def decode(payload: bytes) -> Envelope:
    """Decode the header of ``payload``; raises ValueError when it is too short or unknown."""
    if len(payload) < HEADER_SIZE:
        raise ValueError(f"payload of {len(payload)} B is shorter than the header")
    kind, topic, pub, seq, intended, sent = HEADER.unpack_from(payload)
    return Envelope(Kind(kind), topic, pub, seq, intended, sent)


@functools.lru_cache(maxsize=64)
def header_dtype(stride: int, offset: int) -> np.dtype[np.void]:
    """A structured dtype reading the header of items ``stride`` bytes apart, each header
    ``offset`` bytes into its item (fields ``head``, ``seq``, ``intended``, ``sent``)."""
    if offset < 0 or stride < offset + HEADER_SIZE:
        raise ValueError(f"a {HEADER_SIZE} B header does not fit at {offset} in {stride} B items")
    return np.dtype({
        "names": ["head", "seq", "intended", "sent"],
        "formats": ["<u8", "<i8", "<i8", "<i8"],
        "offsets": [offset, offset + 8, offset + 16, offset + 24],
        "itemsize": stride,
    })


def pack_block(kind: int, topic: int, publisher: int, first_seq: int,
               intended: npt.NDArray[np.int64], sent: int, size: int) -> bytes:
    """Encode ``len(intended)`` messages of ``size`` bytes back to back, in one go.

    Message ``i`` has sequence number ``first_seq + i`` and intended time
    ``intended[i]``; all share ``kind``, ``topic``, ``publisher`` and ``sent``
    and are zero-padded, byte for byte what :func:`encode` with :func:`padding`
    gives.
    """
    records = np.zeros(len(intended), header_dtype(size, 0))
    records["head"] = kind | topic << TOPIC_SHIFT | publisher << PUB_SHIFT
    records["seq"] = np.arange(first_seq, first_seq + len(intended), dtype=np.int64)
    records["intended"] = intended
    records["sent"] = sent
    return records.tobytes()


def stream_key(publisher: int, topic: int) -> int:
    """The key accounting uses for one publisher's stream on one topic."""
    return publisher << TOPIC_SHIFT | topic


@dataclass(frozen=True)
class ReplyStamp:
    """What a responder adds to a reply: who answered, and when it got and answered it."""

    responder: int
    received_ns: int
    replied_ns: int


def make_reply(request: bytes, stamp: ReplyStamp) -> bytes:
    """The reply to ``request``: its header flagged as a reply, then ``stamp``, padded to
    the request's length (or to :data:`REPLY_SIZE`, whichever is longer)."""
    head = request[:1] + bytes([request[1] | REPLY_FLAG]) + request[2:HEADER_SIZE]
    ext = REPLY_EXT.pack(stamp.responder, stamp.received_ns, stamp.replied_ns)
    pad = max(0, len(request) - REPLY_SIZE)
    return head + ext + bytes(pad)


def read_reply(payload: bytes) -> tuple[Envelope, ReplyStamp]:
    """Decode a reply; raises ValueError when it is too short or not a reply."""
    if len(payload) < REPLY_SIZE:
        raise ValueError(f"reply of {len(payload)} B is shorter than {REPLY_SIZE} B")
    env = decode(payload)
    if not payload[1] & REPLY_FLAG:
        raise ValueError("payload is not a reply")
    responder, received, replied = REPLY_EXT.unpack_from(payload, HEADER_SIZE)
    return env, ReplyStamp(responder, received, replied)


_STAMPS = struct.Struct("<QQ")
_STAMPS_AT = 16
"""Where a header's intended and sent times sit (after kind, topic, publisher, sequence)."""


def restamp(payload: bytes, t_ns: int) -> bytes:
    """``payload`` with its intended and sent times both set to ``t_ns``: for a closed-loop
    send that waited for a free slot, whose batch was stamped when the batch was made."""
    return payload[:_STAMPS_AT] + _STAMPS.pack(t_ns, t_ns) + payload[_STAMPS_AT + _STAMPS.size:]


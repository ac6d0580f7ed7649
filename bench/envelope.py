"""The fixed header the driver puts at the start of every payload.

Layout (little endian, 32 bytes)::

    kind u8 | reserved u8 | topic u16 | publisher u32 | seq u64 | intended_ns u64 | sent_ns u64

``intended_ns`` is when the open-loop schedule meant the message to leave;
``sent_ns`` is when it actually did. Both are ``time.monotonic_ns()`` values,
which on Linux share one clock across all processes of a host.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

HEADER = struct.Struct("<BxHIQQQ")
HEADER_SIZE = HEADER.size


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

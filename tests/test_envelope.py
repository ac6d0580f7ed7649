from __future__ import annotations

import numpy as np
import pytest

from msgbench.workload import envelope
from msgbench.workload.envelope import HEADER_SIZE, Envelope, Kind, encode, pack_block, padding


def test_round_trip_keeps_every_field_and_pads_to_size() -> None:
    env = Envelope(Kind.MEASURE, 513, 70_000, 2**40 + 7, 123_456_789_012, 123_456_799_999)
    payload = envelope.encode(env, envelope.padding(100))
    assert len(payload) == 100
    assert envelope.decode(payload) == env


def test_header_only_size_is_allowed_and_smaller_is_refused() -> None:
    assert envelope.padding(HEADER_SIZE) == b""
    with pytest.raises(ValueError, match="smaller than"):
        envelope.padding(HEADER_SIZE - 1)


def test_decode_rejects_short_and_unknown_payloads() -> None:
    with pytest.raises(ValueError):
        envelope.decode(b"\x03" * (HEADER_SIZE - 1))
    bad = bytearray(envelope.encode(Envelope(Kind.PROBE, 0, 1, 2, 3, 4)))
    bad[0] = 99
    with pytest.raises(ValueError):
        envelope.decode(bytes(bad))


@pytest.mark.parametrize("size", [HEADER_SIZE, 64, 1024])
def test_pack_block_is_encode_back_to_back(size: int) -> None:
    intended = np.array([5, 1 << 40, 7, (1 << 62) + 3], np.int64)
    block = pack_block(int(Kind.MEASURE), 513, 70_000, 1 << 33, intended, 99, size)
    one_by_one = b"".join(
        encode(Envelope(Kind.MEASURE, 513, 70_000, (1 << 33) + i, int(x), 99), padding(size))
        for i, x in enumerate(intended)
    )
    assert block == one_by_one


def test_every_kind_fits_the_first_byte_targets_may_rely_on() -> None:
    from msgbench.api import PAYLOAD_FIRST_BYTE_MAX

    assert max(envelope.Kind) <= PAYLOAD_FIRST_BYTE_MAX


def test_a_reply_keeps_the_request_header_and_adds_the_responders_stamp() -> None:
    req = envelope.encode(envelope.Envelope(envelope.Kind.MEASURE, 2, 7, 41, 100, 150),
                          envelope.padding(64))
    reply = envelope.make_reply(req, envelope.ReplyStamp(3, 200, 250))
    assert len(reply) == 64 and reply[0] == req[0]
    env, stamp = envelope.read_reply(reply)
    assert (env.topic, env.publisher, env.seq, env.intended_ns) == (2, 7, 41, 100)
    assert stamp == envelope.ReplyStamp(3, 200, 250)
    assert envelope.decode(reply) == envelope.decode(req), "accounting reads it as the request"
    with pytest.raises(ValueError, match="not a reply"):
        envelope.read_reply(req + bytes(32))

from __future__ import annotations

import pytest

from msgbench.run.control import (
    PROTOCOL_VERSION,
    Done,
    ProbeStatus,
    ProtocolError,
    Report,
    Start,
    Stop,
    dumps,
    loads,
)


def test_messages_round_trip_as_json() -> None:
    for msg in (
        Start(1, 2, 3),
        Stop(),
        Report(worker=1, second=2, counters={"delivered": 5}, events=["x"]),
        Done(0, [{"sub": 1, "delivered": 3, "group": "g0"}], {"1": {"65536": {"base": 0}}}),
        ProbeStatus(2, False, [["s3", 1]], {"g0": [0, 1]}),
    ):
        data = dumps(msg)
        assert data.startswith(b"{")
        assert loads(data) == msg


def test_garbage_is_a_protocol_error() -> None:
    v = PROTOCOL_VERSION
    for bad in (b"not json", b'{"type": "Nope"}', b"[1]",
                f'{{"v": {v}, "type": "Start", "start_ns": 1}}'.encode(),
                f'{{"v": {v}, "type": "Nope"}}'.encode()):
        with pytest.raises(ProtocolError):
            loads(bad)


def test_unknown_fields_and_other_versions_are_refused_loudly() -> None:
    good = dumps(Start(1, 2, 3))
    assert loads(good) == Start(1, 2, 3)
    extra = good.replace(b'"start_ns"', b'"surprise":1,"start_ns"')
    with pytest.raises(ProtocolError, match="unknown fields: surprise"):
        loads(extra)
    older = good.replace(f'"v":{PROTOCOL_VERSION}'.encode(), b'"v":1')
    with pytest.raises(ProtocolError, match="version 1"):
        loads(older)
    unversioned = good.replace(f'"v":{PROTOCOL_VERSION},'.encode(), b"")
    with pytest.raises(ProtocolError, match="version None"):
        loads(unversioned)

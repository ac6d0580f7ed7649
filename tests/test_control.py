from __future__ import annotations

import pytest

from msgbench.run.control import Done, ProtocolError, Report, Start, Stop, dumps, loads


def test_messages_round_trip_as_json() -> None:
    for msg in (
        Start(1, 2, 3),
        Stop(),
        Report(worker=1, second=2, delivered=5, events=["x"]),
        Done(0, [{"sub": 1, "delivered": 3}]),
    ):
        data = dumps(msg)
        assert data.startswith(b"{")
        assert loads(data) == msg


def test_garbage_is_a_protocol_error() -> None:
    for bad in (b"not json", b'{"type": "Nope"}', b"[1]", b'{"type": "Start", "start_ns": 1}'):
        with pytest.raises(ProtocolError):
            loads(bad)

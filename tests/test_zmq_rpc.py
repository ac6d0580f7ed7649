"""The zmq request/reply modes (reqrep, dealer, rpc-broker) on real sockets and processes:
replies matched, a REQ socket whose reply never comes (a killed responder or rpc broker:
tests/test_fault_contract.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest
import zmq

from msgbench.api.target import Sink, TargetError
from msgbench.kit.procs import LOOPBACK
from msgbench.targets.zmq import reqrep
from msgbench.targets.zmq.settings import Settings

RUN = ["run", "-t", "zmq", "--pattern", "rpc", "--json", "--quiet", "-w", "300ms"]


@pytest.mark.parametrize(("mode", "topics"), [("reqrep", 1), ("dealer", 2), ("rpc-broker", 2)])
def test_every_reply_comes_back_to_its_requester(run_cli: Any, mode: str, topics: int) -> None:
    # with two topics each responder serves one: a request to the other's responder shows
    r = run_cli(*RUN, "--zmq-mode", mode, "--topics", str(topics), "--pubs", "3", "--subs",
                "2", "--rate", "1k", "-d", "1s")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    s = doc["summary"]
    assert doc["status"] == "ok", doc["reasons"]
    assert s["delivered"] == s["expected"] == s["published"] > 0
    assert s["misrouted"] == s["orphan_replies"] == s["duplicated"] == s["timeouts"] == 0
    assert doc["target"]["mode"] == mode
    assert doc["legs"]["rpc_request_leg"]["count"] == s["delivered"]
    assert doc["legs"]["rpc_reply_leg"]["count"] == s["delivered"]
    if mode == "rpc-broker":
        assert any(p["role"] == "zmq-rpc-broker" for p in doc["processes"]), doc["processes"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pattern", "rpc", "--zmq-mode", "mesh"], "carries --pattern broadcast only"),
        (["--pattern", "tasks", "--zmq-mode", "reqrep"], "carries --pattern rpc only"),
    ],
)
def test_a_mode_for_another_pattern_is_one_line_and_exit_2(run_cli: Any, args: list[str],
                                                          message: str) -> None:
    r = run_cli("run", "-t", "zmq", *args, "-d", "1s", "--quiet")
    assert r.returncode == 2, r.stderr
    assert message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_settings_pick_dealer_for_rpc() -> None:
    assert Settings.parse({}).for_pattern("rpc").mode == "dealer"


@pytest.mark.parametrize(
    ("options", "pattern", "message"),
    [
        ({"zmq_mode": "broker"}, "rpc", "carries --pattern tasks only"),
        ({"zmq_mode": "dealer"}, "tasks", "carries --pattern rpc only"),
        ({"zmq_mode": "rpc-broker"}, "broadcast", "carries --pattern rpc only"),
        ({"zmq_req_timeout": 50}, "rpc", "needs --zmq-mode reqrep"),
        ({"zmq_mode": "reqrep", "zmq_req_timeout": 0}, "rpc", "--zmq-req-timeout"),
        ({"zmq_nodrop": True}, "rpc", "--zmq-nodrop"),
        ({"zmq_mode": "dealer", "zmq_nodrop": True}, "rpc", "--zmq-nodrop"),
    ],
)
def test_settings_refuse_what_rpc_cannot_take(options: dict[str, Any], pattern: str,
                                               message: str) -> None:
    with pytest.raises(TargetError, match=message):
        Settings.parse(options).for_pattern(pattern)


# -- a REQ socket whose reply never comes does not hang ------------------------------------


class _Replies(Sink):
    def __init__(self) -> None:
        self.got: list[bytes] = []

    def deliver(self, payloads: Sequence[bytes], offset: int = 0) -> None:
        self.got += [p[offset:] for p in payloads]

    def disconnected(self, reason: str) -> None:
        raise AssertionError(reason)

    def note(self, reason: str) -> None:
        pass


async def _unanswered_then_answered() -> tuple[list[bytes], int]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    peer = ctx.socket(zmq.ROUTER)  # a responder that answers only the second request
    port = peer.bind_to_random_port(f"tcp://{LOOPBACK}")
    sink = _Replies()
    req = reqrep.open_requester(["t"], lambda _t: [f"tcp://{LOOPBACK}:{port}"], sink,
                                ctx.socket, timeout_ms=100)
    await req.request("t", [b"\x01first", b"\x01second"])
    loop = asyncio.get_running_loop()
    first = await loop.run_in_executor(None, peer.recv_multipart)
    second = await loop.run_in_executor(None, peer.recv_multipart)  # came after the timeout
    peer.send_multipart([*second[:-1], b"\x01reply-second"])
    peer.send_multipart([*first[:-1], b"\x01reply-first"])  # too late: REQ_CORRELATE drops it
    for _ in range(100):
        if sink.got:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    abandoned = req.steps["t"].abandoned  # type: ignore[attr-defined]
    await req.close()
    peer.close(linger=0)
    ctx.term()
    return sink.got, abandoned


def test_a_req_socket_moves_on_after_its_timeout_and_drops_the_late_reply() -> None:
    got, abandoned = asyncio.run(_unanswered_then_answered())
    assert got == [b"\x01reply-second"]
    assert abandoned == 1

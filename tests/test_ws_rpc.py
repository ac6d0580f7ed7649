"""Request/reply on the chat server: the frames against one real server, and ``ws --pattern
rpc`` through one server and each bridge (a responder killed mid-run:
tests/test_fault_contract.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from test_chat_server import RECV_TIMEOUT_S, chat_server, join, nothing_arrives, stats

from msgbench.kit.redis_server import check_installed
from msgbench.targets.ws.chat_rpc import REPLY, REQUEST, TO_RESPONDER

RUN = ["run", "-t", "ws", "--pattern", "rpc", "--json", "--quiet", "-w", "300ms"]
BRIDGED = {"none": [], "redis": ["--servers", "2", "--bridge", "redis", "--ws-placement", "cross"],
           "zmq": ["--servers", "2", "--bridge", "zmq", "--ws-placement", "cross"]}
NEEDS_REDIS = pytest.mark.skipif(check_installed() is not None, reason="needs redis-server")
LAYOUTS = [pytest.param("none"), pytest.param("redis", marks=NEEDS_REDIS), pytest.param("zmq")]


def _request_of(frame: bytes) -> tuple[bytes, bytes]:
    """(the address with its length byte, the request) of a TO_RESPONDER frame."""
    assert frame[0] == TO_RESPONDER
    end = 2 + frame[1]
    return frame[1:end], frame[end:]


def test_a_reply_reaches_only_the_requester_it_names(tmp_path: Path) -> None:
    async def main(port: int) -> None:
        a = await join(port, "svc", listen="0")
        b = await join(port, "svc", listen="0")
        member = await join(port, "svc")  # a member of the room: requests are not for it
        await a.send(bytes((REQUEST,)) + b"\x01no responder yet")
        assert await nothing_arrives(a)
        r1 = await join(port, "svc", respond="1")
        r2 = await join(port, "svc", respond="1")
        await a.send(bytes((REQUEST,)) + b"\x01from a")
        await b.send(bytes((REQUEST,)) + b"\x01from b")
        got = [await asyncio.wait_for(r.recv(), RECV_TIMEOUT_S) for r in (r1, r2)]
        cut = [_request_of(g) for g in got if isinstance(g, bytes)]
        (addr_a, req_a), (addr_b, req_b) = sorted(cut, key=lambda x: x[1])
        assert (req_a, req_b) == (b"\x01from a", b"\x01from b")  # one each: round robin
        assert addr_a != addr_b
        await r2.send(bytes((REPLY,)) + addr_a + b"\x02to a")
        assert await asyncio.wait_for(a.recv(), RECV_TIMEOUT_S) == b"\x02to a"
        assert await nothing_arrives(b) and await nothing_arrives(member)
        # a made-up address reaches nobody; nor does a reply whose requester left
        forged = bytes((addr_a[0],)) + addr_a[1:-8] + bytes(8)
        await r1.send(bytes((REPLY,)) + forged + b"\x02forged")
        await b.close()
        await asyncio.sleep(0.2)
        await r1.send(bytes((REPLY,)) + addr_b + b"\x02to b, gone")
        assert await nothing_arrives(a) and await nothing_arrives(member)
        # a responder that leaves is out of the rotation: every request goes to the other
        await r2.close()
        await asyncio.sleep(0.2)
        for i in range(4):
            await a.send(bytes((REQUEST,)) + bytes((1, i)))
        for i in range(4):
            frame = await asyncio.wait_for(r1.recv(), RECV_TIMEOUT_S)
            assert isinstance(frame, bytes) and _request_of(frame)[1] == bytes((1, i))
        for ws in (a, member, r1):
            await ws.close()

    with chat_server(tmp_path) as port:
        asyncio.run(main(port))
        s = stats(port)
    assert s["requests_in"] == 7 and s["requests_unroutable"] == 1
    assert s["requests_out"] == 6
    assert s["replies_in"] == 3 and s["replies_out"] == 1 and s["replies_dropped"] == 2
    assert s["messages_in"] == s["messages_out"] == 0  # none of it was a room message


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_reply_comes_back_to_its_requester(run_cli: Any, layout: str) -> None:
    r = run_cli(*RUN, *BRIDGED[layout], "--pubs", "3", "--subs", "2", "--rate", "500",
                "-d", "1s")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    s = doc["summary"]
    assert doc["status"] == "ok", doc["reasons"]
    assert s["delivered"] == s["expected"] == s["published"] > 0
    assert s["misrouted"] == s["orphan_replies"] == s["duplicated"] == s["timeouts"] == 0
    assert doc["legs"]["rpc_request_leg"]["count"] == s["delivered"]
    servers = doc["target"]["server_stats"]
    assert all(x["replies_dropped"] == x["requests_unroutable"] == 0 for x in servers)
    if layout != "none":  # cross placement: every request and reply took the bridge
        requesters, responders = servers
        assert requesters["requests_out"] == 0 < requesters["rpc_bridge_out"]
        assert responders["requests_out"] == requesters["requests_in"]
        assert requesters["replies_out"] == responders["replies_in"]

"""redis-rpc against a real private redis-server: replies matched (a killed responder:
tests/test_fault_contract.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from msgbench.kit.procs import which

pytestmark = pytest.mark.skipif(which("redis-server") is None, reason="needs redis-server")
RUN = ["run", "-t", "redis-rpc", "--pattern", "rpc", "--json", "--quiet", "-w", "300ms"]


@pytest.mark.parametrize("reply", ["list", "pubsub"])
def test_every_reply_comes_back_to_its_requester(run_cli: Any, reply: str) -> None:
    r = run_cli(*RUN, "--rpc-reply", reply, "--pubs", "3", "--subs", "2", "--rate", "1k",
                "-d", "1s")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    s = doc["summary"]
    assert doc["status"] == "ok", doc["reasons"]
    assert s["delivered"] == s["expected"] == s["published"] > 0
    assert s["misrouted"] == s["orphan_replies"] == s["duplicated"] == 0
    assert doc["target"]["reply"] == reply
    assert doc["legs"]["rpc_request_leg"]["count"] == s["delivered"]

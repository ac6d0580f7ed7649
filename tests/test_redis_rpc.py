"""redis-rpc against a real private redis-server: replies matched, a killed responder."""

from __future__ import annotations

import json
import time
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


def test_a_killed_responder_shows_as_timeouts_and_the_run_ends(run_cli: Any) -> None:
    started = time.monotonic()
    r = run_cli(*RUN, "--pubs", "2", "--subs", "2", "--procs", "3", "--rate", "500",
                "-d", "3s", "--kill-worker", "1s", "--timeout", "300ms",
                "--drain-timeout", "1s")
    elapsed = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    s = doc["summary"]
    assert any("killed on purpose" in x for x in doc["reasons"]), doc["reasons"]
    assert s["timeouts"] == max(0, s["expected"] - (s["delivered"] - s["late"]))
    assert s["lost"] == s["expected"] - s["delivered"]
    assert s["delivered"] > 0, "the other responder answered after the kill"
    assert elapsed < 30, f"the run took {elapsed:.0f} s"

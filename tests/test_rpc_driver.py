"""The driver's side of request/reply: matched replies, legs, timeouts and late replies."""

from __future__ import annotations

import json
from typing import Any

RUN = ["run", "--pattern", "rpc", "--pubs", "2", "--subs", "2", "-w", "300ms", "--json",
       "--quiet"]


def test_replies_are_matched_exactly_with_their_legs(run_cli: Any) -> None:
    r = run_cli(*RUN, "--rate", "2k", "-d", "1s")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    s = doc["summary"]
    assert doc["status"] == "ok", doc["reasons"]
    assert s["delivered"] == s["expected"] == s["published"] > 0
    assert s["timeouts"] == s["late"] == s["orphan_replies"] == s["misrouted"] == 0
    legs = doc["legs"]
    assert set(legs) == {"rpc_request_leg", "rpc_service", "rpc_reply_leg"}
    assert all(leg["count"] == s["delivered"] for leg in legs.values())
    # the legs add up to no more than the round trip from the actual send
    total = sum(leg["p50"] for leg in legs.values())
    assert total <= 3 * doc["summary"]["latency_uncorrected_ns"]["p99"]


def test_replies_slower_than_the_timeout_are_late_and_counted_as_timeouts(run_cli: Any) -> None:
    """A responder told to take 20 ms per request, a 10 ms timeout: every reply is late."""
    r = run_cli(*RUN, "--rate", "50", "-d", "1s", "--work", "fixed:20ms", "--timeout", "10ms")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    s = doc["summary"]
    assert doc["status"] == "degraded"
    assert s["delivered"] == s["expected"] > 0, "late replies are still matched"
    assert s["late"] == s["delivered"] and s["timeouts"] == s["expected"]
    assert any("timed out" in x for x in doc["reasons"]), doc["reasons"]
    assert doc["legs"]["rpc_service"]["p50"] >= 20_000_000


def test_closed_loop_keeps_at_most_n_in_flight_and_says_so(run_cli: Any) -> None:
    r = run_cli(*RUN, "--inflight", "4", "-d", "1s", "--work", "fixed:2ms")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    s = doc["summary"]
    assert doc["status"] == "ok", doc["reasons"]
    # 2 requesters x 4 in flight, 2 ms each on 2 responders: at most ~ 2 * 500 per second
    # per responder, whatever the send loop would like
    assert 0 < s["deliveries_per_s"] <= 2 * 550
    assert doc["latency_mode"] == "closed-loop"


def test_closed_loop_round_trip_obeys_littles_law(run_cli: Any) -> None:
    """One call in flight: the mean round trip times the call rate is at most one. A
    request stamped when its batch was made, not when its slot came free, once read
    1.4 ms for a 25 us round trip."""
    r = run_cli("run", "--pattern", "rpc", "--pubs", "1", "--subs", "1", "--inflight", "1",
                "-d", "1s", "-w", "300ms", "--json", "--quiet")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)["summary"]
    assert s["delivered"] > 1000
    assert s["latency_ns"]["mean"] / 1e9 * s["deliveries_per_s"] <= 1.05, s["latency_ns"]


def test_what_is_no_reply_is_an_error_and_a_reply_to_nothing_an_orphan() -> None:
    from msgbench.run.replies import ReplySink
    from msgbench.run.sink import Buffers
    from msgbench.workload.envelope import HEADER, Kind, ReplyStamp, make_reply

    sink = ReplySink(3, 0, Buffers(), True, 10**9, sent=lambda: 2)
    request = [HEADER.pack(int(Kind.MEASURE), 0, 3, seq, 1, 1) + bytes(32) for seq in range(3)]
    stamp = ReplyStamp(0, 2, 3)
    sink.deliver([make_reply(request[0], stamp),  # matched
                  request[1],                      # a request echoed back: no reply
                  b"\x02short",                    # a corrupt frame
                  make_reply(request[2], stamp)])  # seq 2 was never sent: an orphan
    c = sink.counters()
    assert (c.delivered, c.errors, c.orphan_replies) == (1, 2, 1)

"""The Redis task designs against a real redis-server: lists (BRPOP, BLMOVE + reaper) and
Streams consumer groups, with the ledger exact, a killed worker, a slow one."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import CliRun
from msgbench.kit.procs import which
from msgbench.targets.redis.queues import REDELIVERED_MARK, split_marked

pytestmark = pytest.mark.skipif(not which("redis-server"), reason="redis-server not installed")

SHAPE = ["--pattern", "tasks", "--pubs", "2", "--subs", "4", "--rate", "2k", "--json",
         "--quiet"]
SHORT = ["--duration", "1s", "--warmup", "200ms"]
DESIGNS = {
    "streams-batch": ["-t", "redis-streams"],
    "streams-each": ["-t", "redis-streams", "--group-ack", "each", "--group-count", "1"],
    "brpop": ["-t", "redis-list", "--list-mode", "brpop"],
    "blmove": ["-t", "redis-list", "--list-mode", "blmove"],
}
# the kill needs the members in two worker processes; redelivery needs the claim idle or
# lease (1 s) plus a claim or reaper pass inside the drain
KILL = ["--procs", "3", "--duration", "3s", "--warmup", "200ms", "--kill-worker", "1s",
        "--work", "fixed:1ms", "--drain-timeout", "3s"]


def _doc(r: CliRun) -> dict[str, Any]:
    assert r.returncode == 0, r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def test_marks_split_into_runs_in_order() -> None:
    m = bytes([REDELIVERED_MARK])
    assert split_marked([b"a", m + b"b", m + b"c", b"d"]) == [
        ([b"a"], False), ([b"b", b"c"], True), ([b"d"], False)]
    assert split_marked([]) == []


@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_ledger_exact_at_a_moderate_rate(run_cli: Any, design: str) -> None:
    doc = _doc(run_cli("run", *DESIGNS[design], *SHAPE, *SHORT))
    s = doc["summary"]
    assert doc["status"] == "ok", doc["reasons"]
    assert s["published"] == s["expected"] == s["delivered"] == 4000
    assert s["lost"] == s["duplicated"] == s["redelivered"] == s["misrouted"] == 0
    g = doc["groups"]["g0"]
    assert sum(g["shares"]) == 4000 and len(g["shares"]) == 4
    depth = [(x["queue_waiting"], x["queue_unacked"]) for x in doc["series"]]
    assert depth and all(w is not None and w >= 0 for w, _ in depth), depth
    # a popped task leaves no trace in Redis: only the reliable designs know the unacked
    assert all((u is None) == (design == "brpop") for _, u in depth), depth
    if design.startswith("streams"):
        assert doc["target"]["group_ack"] == design.split("-")[1]
        assert doc["target"]["groups_left"] == {"g0": {"pending": 0, "lag": 0}}
    else:
        assert doc["target"]["left"] == {"queued": 0, "in_processing_lists": 0}


def test_killed_group_member_entries_are_claimed_not_lost(run_cli: Any) -> None:
    doc = _doc(run_cli("run", *DESIGNS["streams-batch"], *SHAPE, *KILL))
    s, g = doc["summary"], doc["groups"]["g0"]
    why = (s, g, doc["reasons"], doc["target"].get("groups_left"))
    assert s["lost"] == 0 and s["delivered"] == s["expected"] > 0, why
    assert s["redelivered"] > 0, why
    # claimed once idle past --claim-idle (1 s) counted from their last delivery, which
    # can precede the kill by the time the dead member spent on them
    assert 0 < g["recovery_s"] < 3, why
    assert doc["target"]["groups_left"]["g0"]["pending"] == 0, why  # the dead member's: claimed


def test_killed_brpop_worker_loses_what_it_held_counted_exactly(run_cli: Any) -> None:
    doc = _doc(run_cli("run", *DESIGNS["brpop"], *SHAPE, *KILL))
    s = doc["summary"]
    assert s["lost"] > 0 and s["lost"] == s["expected"] - s["delivered"]
    # at most what the killed members could hold: --list-count 10 each, two of them
    assert s["lost"] <= 2 * 10
    # what the killed members held in hand at the kill is lost; more may have been popped
    # and still in the socket, lost too but never in hand
    assert 0 < s["orphaned"] <= s["lost"], s
    assert s["redelivered"] == s["duplicated"] == 0
    assert doc["target"]["left"]["queued"] == 0  # lost in the dead worker, not left queued


def test_killed_blmove_worker_list_is_reaped_and_redone(run_cli: Any) -> None:
    doc = _doc(run_cli("run", *DESIGNS["blmove"], *SHAPE, *KILL))
    s, info = doc["summary"], doc["target"]
    assert s["lost"] == 0 and s["delivered"] == s["expected"] > 0, doc["reasons"]
    assert s["redelivered"] > 0 and info["reaped"] == s["redelivered"]
    assert {e["consumer"] for e in info["reap_events"]} <= {"c0", "c2"}  # the killed ones
    assert info["left"] == {"queued": 0, "in_processing_lists": 0}


def test_a_slow_group_member_does_fewer_tasks(run_cli: Any) -> None:
    """Members pull: one ten times slower asks less often, so it does far fewer tasks."""
    doc = _doc(run_cli("run", *DESIGNS["streams-batch"], *SHAPE, "--rate", "1k",
                       "--work", "fixed:400us", "--slow-worker", "0:x10", "--duration",
                       "1500ms", "--warmup", "300ms"))
    assert doc["summary"]["delivered"] == doc["summary"]["expected"] > 0
    g = doc["groups"]["g0"]
    slow, *rest = g["shares"]
    assert slow * 2 < min(rest), g
    assert g["jain"] < 0.95 and g["max_min"] > 2


@pytest.mark.parametrize(("args", "flag"), [
    (["-t", "redis-list", "--list-count", "0"], "--list-count"),
    (["-t", "redis-list", "--list-reap-after", "soon"], "--list-reap-after"),
    (["-t", "redis-streams", "--claim-idle", "0ms"], "--claim-idle"),
    (["-t", "redis-list", "--list-mode", "lpop"], "--list-mode"),
])
def test_bad_options_are_one_line(run_cli: Any, args: list[str], flag: str) -> None:
    r = run_cli("run", *args, "--pattern", "tasks", *SHORT)
    assert r.returncode == 2 and flag in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_lists_carry_no_broadcast(run_cli: Any) -> None:
    r = run_cli("run", "-t", "redis-list", *SHORT)
    assert r.returncode == 2 and "does not carry the broadcast" in r.stderr

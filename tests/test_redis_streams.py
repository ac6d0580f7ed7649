"""The ``redis-streams`` target: durable cursors on a real redis-server."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import CliRun
from msgbench.kit.procs import which
from msgbench.targets.redis.stream_cursor import Mark, trimmed_past

pytestmark = pytest.mark.skipif(not which("redis-server"), reason="redis-server not installed")

SHORT = ["--duration", "500ms", "--warmup", "100ms", "--quiet"]


def _doc(r: CliRun) -> dict[str, Any]:
    assert r.returncode == 0, r.stderr
    return r.result()


def test_trim_arithmetic() -> None:
    """Entries dropped after a cursor: entries-added minus what is left, minus what was read."""
    info = [b"length", 100, b"entries-added", 1000, b"first-entry", [b"5-0", [b"d", b"x"]]]
    mark = Mark(b"3-0", 850)  # read 850 entries; 900 came before the first one left
    assert trimmed_past(info, mark) == 50 and mark.added == 900
    assert trimmed_past(info, Mark(b"5-0", 900)) == 0  # first entry not beyond the cursor
    assert trimmed_past(info, Mark(b"3-0", None)) is None  # server does not count
    assert trimmed_past([b"length", 0, b"first-entry", None], Mark()) == 0


def test_every_subscriber_gets_every_entry_of_its_topic(run_cli: Any) -> None:
    doc = _doc(run_cli("run", "-t", "redis-streams", "--pubs", "2", "--subs", "3",
                       "--topics", "2", "--rate", "2000", *SHORT))
    s = doc["summary"]
    assert doc["status"] == "ok", doc["reasons"]
    assert s["published"] == 2000
    # topic 0 has subscribers 0 and 2, topic 1 has subscriber 1; publishers alternate topics
    assert s["expected"] == 1000 * 2 + 1000 == s["delivered"]
    assert s["lost"] == s["duplicated"] == s["reordered"] == s["misrouted"] == 0
    info = doc["target"]
    assert info["stream_maxlen"] == 1_000_000 and info["version"]
    assert [p for p in doc["processes"] if p["role"] == "redis-server"]


def test_stream_trimmed_past_a_slow_subscriber(run_cli: Any) -> None:
    doc = _doc(run_cli("run", "-t", "redis-streams", "--subs", "1", "--rate", "10000",
                       "--stream-maxlen", "100", "--sub-delay", "300us",
                       "--drain-timeout", "500ms", *SHORT, timeout=120))
    assert doc["status"] == "degraded"
    assert doc["summary"]["lost"] > 0
    assert any("trimmed past its cursor" in x for x in doc["reasons"]), doc["reasons"]
    assert doc["target"]["stream_maxlen"] == 100


def test_churned_subscribers_resume_from_their_cursor(run_cli: Any) -> None:
    doc = _doc(run_cli("run", "-t", "redis-streams", "--subs", "2", "--rate", "2000",
                       "--churn", "200ms/600ms", "--duration", "1500ms", "--warmup", "100ms",
                       "--quiet"))
    s = doc["summary"]
    assert doc["status"] == "ok", doc["reasons"]
    assert s["delivered"] == s["expected"] == 2 * 3000
    assert s["lost"] == s["lost_during_churn"] == s["duplicated"] == 0


def test_a_users_server_keeps_its_keys_and_loses_our_streams(run_cli: Any) -> None:
    import redis

    from msgbench.kit.redis_server import private_server

    with private_server() as srv:
        user = redis.Redis.from_url(srv.url)
        user.xadd("t0", {"mine": "1"})
        r = run_cli("run", "--target", "redis-streams", "--redis-url", srv.url, "--subs", "2",
                    "--rate", "1000", "--duration", "500ms", "--warmup", "100ms", "--quiet")
        assert r.returncode == 0, r.stderr
        doc = r.result()
        assert doc["summary"]["delivered"] == doc["summary"]["expected"] > 0
        assert user.xlen("t0") == 1, "the user's own stream t0 was touched"
        assert user.keys("msgbench:*") == [], "the run's streams were left behind"
        user.close()

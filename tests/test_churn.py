"""Subscriber churn: staggered absences, and loss booked as loss during churn."""

from __future__ import annotations

from typing import Any

import pytest

from msgbench.accounting.sequence import SequenceTracker
from msgbench.run.churn import NS, RETURN_MARGIN_S, away_windows
from msgbench.workload.config import ConfigError, RunConfig
from msgbench.workload.values import parse_churn


def test_windows_are_staggered_and_periodic() -> None:
    m = int(RETURN_MARGIN_S * NS)
    w0 = away_windows(0, 4, 0.5, 2.0, 0, 5 * NS)
    w1 = away_windows(1, 4, 0.5, 2.0, 0, 5 * NS)
    half = NS // 2
    assert w0 == [(m, m + half), (m + 2 * NS, m + 2 * NS + half), (m + 4 * NS, m + 4 * NS + half)]
    assert w1 == [(m + half, m + NS), (m + 5 * half, m + 3 * NS)], "back before the end"


def test_parse_and_validate_churn() -> None:
    assert parse_churn("500ms/2s") == (0.5, 2.0)
    assert parse_churn(None) == (0.0, 0.0)
    with pytest.raises(ConfigError):
        parse_churn("500ms")
    with pytest.raises(ConfigError):
        RunConfig(churn_away_s=2.0, churn_period_s=1.0).validate()


def test_first_gap_after_return_is_churn_loss_later_gaps_are_not() -> None:
    t = SequenceTracker()
    for s in range(5):
        t.observe(7, s)
    t.returned()
    t.settle_churn(7, 10)  # 5..9 were published while away
    assert t.observe(7, 10)
    assert t.churn_lost == 5
    t.observe(7, 12)  # a gap while connected
    assert t.churn_lost == 5 and t.lost_gaps == 6


def test_churn_on_plain_broadcast_loses_exactly_what_was_sent_while_away(run_cli: Any) -> None:
    r = run_cli("run", "--pubs", "2", "--subs", "4", "--rate", "4000", "--duration", "2s",
                "--warmup", "200ms", "--churn", "300ms/1s", "--quiet")
    assert r.returncode == 0, r.stderr
    doc = r.result()
    s = doc["summary"]
    assert doc["status"] == "degraded"
    assert s["lost"] > 0
    assert s["lost"] == s["lost_during_churn"], "all loss happened while away"
    assert s["delivered"] + s["lost"] == s["expected"]
    assert any("while subscribers were away" in x for x in doc["reasons"])
    # each subscriber is away 300 ms a second (not near the end): a share of its messages lost
    for sub in doc["subscribers"]:
        share = s["expected"] // 4
        assert sub["delivered"] + sub["lost_during_churn"] == share
        assert 0.1 * share < sub["lost_during_churn"] < 0.5 * share


def test_churn_on_redis_pubsub_books_exactly_what_was_missed(run_cli: Any) -> None:
    r = run_cli("run", "--target", "redis", "--subs", "4", "--rate", "3000", "--duration",
                "2s", "--warmup", "300ms", "--churn", "400ms/1s", "--quiet")
    assert r.returncode == 0, r.stderr
    doc = r.result()
    s = doc["summary"]
    assert s["lost"] > 0 and s["lost"] == s["lost_during_churn"]
    for sub in doc["subscribers"]:
        assert sub["delivered"] + sub["lost_during_churn"] == s["published"]

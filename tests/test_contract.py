"""Every target through every pattern it declares, against its real servers.

A target that declares a pattern must carry it exactly: everything
owed delivered once, nothing lost, duplicated or misrouted, at a moderate rate.
A pattern it does not declare is one line and exit 2.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from msgbench.api import Pattern
from msgbench.api.registry import load_target, target_names

SHORT = ["--duration", "800ms", "--warmup", "200ms", "--drain-timeout", "1s", "--rate", "2k",
         "--json", "--quiet"]
SHAPE = {"broadcast": ["--pubs", "2", "--subs", "3"], "tasks": ["--pubs", "2", "--subs", "3"],
         "rpc": ["--pubs", "2", "--subs", "2", "--size", "64"]}


def _cases() -> list[Any]:
    out = []
    for name in target_names():
        target = load_target(name)
        ready = target.check().ok
        for pattern in Pattern:
            marks = [] if ready else [pytest.mark.skip(reason=target.check().detail)]
            out.append(pytest.param(name, pattern, pattern in target.patterns, marks=marks,
                                    id=f"{name}-{pattern.value}"))
    return out


@pytest.mark.parametrize(("name", "pattern", "declared"), _cases())
def test_target_carries_what_it_declares(run_cli: Any, name: str, pattern: Pattern,
                                         declared: bool, request: pytest.FixtureRequest,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    if name == "rabbitmq" and declared:
        # the session's broker: a private node per case would cost seconds each, and the
        # private path is tested in test_rabbitmq.py
        monkeypatch.setenv("MSGBENCH_AMQP_URL", request.getfixturevalue("rabbit_broker").url)
    r = run_cli("run", "-t", name, "--pattern", pattern, *SHAPE[pattern], *SHORT)
    if not declared:
        assert r.returncode == 2, r.stderr
        assert "does not carry the" in r.stderr and len(r.stderr.strip().splitlines()) == 1
        return
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    s = doc["summary"]
    assert doc["config"]["pattern"] == pattern
    assert doc["status"] == "ok", doc["reasons"]
    assert s["expected"] > 0 and s["delivered"] == s["expected"], s
    assert s["lost"] == s["duplicated"] == s["misrouted"] == 0
    # nothing left in a member's hands, nothing below zero (a batch given back twice once
    # made orphaned negative, and the loader refused every such file)
    assert s["orphaned"] == 0 and all(v >= 0 for v in s.values() if isinstance(v, int))
    if pattern == "broadcast":
        assert s["expected"] == s["published"] * 3
    else:
        assert s["expected"] == s["published"]
    assert s["latency_ns"]["count"] >= s["delivered"]

"""The driver's side of task distribution: work, a slow worker, fairness, the kill."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from msgbench.workload.config import ConfigError, RunConfig
from msgbench.workload.work import Work, parse_slow_worker, parse_work


def test_work_models_parse_and_have_the_mean_they_say() -> None:
    rng = np.random.default_rng(1)
    assert parse_work("") == Work()
    assert parse_work("fixed:1ms").sample_ns(3, rng).tolist() == [1_000_000] * 3
    for text in ("exp:1ms", "lognormal:1ms,0.5"):
        w = parse_work(text)
        assert w.describe() == text
        mean = float(w.sample_ns(200_000, rng).mean())
        assert mean == pytest.approx(1e6, rel=0.02), text
    assert parse_work("fixed:1ms").sample_ns(2, rng, factor=10).tolist() == [10_000_000] * 2
    assert parse_slow_worker("2:x10") == (2, 10.0)


@pytest.mark.parametrize("bad", ["fixed", "poisson:1ms", "fixed:1ms,2", "lognormal:1ms",
                                 "lognormal:1ms,9", "exp:1h", "exp:-1ms"])
def test_bad_work_is_one_clear_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="--work"):
        parse_work(bad)


@pytest.mark.parametrize(("cfg", "message"), [
    (RunConfig(work="fixed:1ms"), "applies to --pattern tasks and rpc"),
    (RunConfig(pattern="rpc", slow_worker="0:x2"), "applies to --pattern tasks only"),
    (RunConfig(inflight=4), "applies to --pattern rpc only"),
    (RunConfig(pattern="rpc", inflight=4, rate=100.0), "use it with --rate max"),
    (RunConfig(pattern="tasks", subs=2, slow_worker="5:x2"), "only 2 subscribers"),
    (RunConfig(pattern="tasks", kill_worker_s=20.0), "inside the measured window"),
    (RunConfig(pattern="tasks", slow_worker="0:x0"), "between 1 and"),
])
def test_task_options_are_checked(cfg: RunConfig, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cfg.validate()


def test_a_slow_worker_does_fewer_tasks_of_a_shared_queue(run_cli: Any) -> None:
    """inproc's members take from one queue when they are free, so a worker ten times
    slower does far fewer tasks, and the ledger stays exact."""
    r = run_cli("run", "--pattern", "tasks", "--pubs", "2", "--subs", "4", "--rate", "1k",
                "--work", "fixed:400us", "--slow-worker", "0:x10", "-d", "1500ms", "-w",
                "300ms", "--json", "--quiet")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["status"] == "ok", doc["reasons"]
    assert doc["summary"]["delivered"] == doc["summary"]["expected"] > 0
    g = doc["groups"]["g0"]
    slow, *rest = g["shares"]
    assert sum(g["shares"]) == doc["summary"]["delivered"]
    assert slow * 2 < sum(rest) / len(rest), g  # not 10x: a member holds what it took
    assert g["jain"] < 0.95 and g["max_min"] > 2
    assert all(0 <= u <= 1.0 for u in g["utilisation"]), g


def test_kill_worker_needs_someone_left(run_cli: Any) -> None:
    r = run_cli("run", "--pattern", "tasks", "--kill-worker", "1s", "-d", "2s")
    assert r.returncode == 2
    assert "at least two subscriber worker processes" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1

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


def test_work_is_waited_out_to_the_microsecond_and_timed_per_task(run_cli: Any) -> None:
    """fixed:300us at 500 tasks/s per member is 15 % busy. uvloop's timers round a sub-ms
    sleep to nothing, which once made this read 1-5 %: the work waits on the pacer."""
    r = run_cli("run", "--pattern", "tasks", "--pubs", "1", "--subs", "2", "--rate", "1k",
                "--work", "fixed:300us", "-d", "1500ms", "-w", "300ms", "--json", "--quiet")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    s, legs, g = doc["summary"], doc["legs"], doc["groups"]["g0"]
    assert doc["status"] == "ok", doc["reasons"]
    assert all(0.13 <= u <= 0.3 for u in g["utilisation"]), g
    assert 300_000 <= legs["task_service"]["p50"] < 600_000, legs["task_service"]
    assert legs["task_service"]["min"] >= 300_000 * 0.99
    # every measured task waited in the queue once and was timed once
    assert legs["task_queue_wait"]["count"] == legs["task_service"]["count"] == s["delivered"]
    assert legs["task_queue_wait_uncorrected"]["count"] == s["delivered"]
    # completion = queue wait + service: its median is above the service's
    assert s["latency_ns"]["p50"] >= legs["task_service"]["p50"]
    # inproc can tell its queue's depth: a sample per measured second, never negative
    depths = [(x["queue_waiting"], x["queue_unacked"]) for x in doc["series"]]
    assert depths and all(w is not None and u is not None and w >= 0 and u >= 0
                          for w, u in depths), depths
    assert g["idle_with_backlog_total_s"] == sum(g["idle_with_backlog_s"])


def test_idle_with_backlog_counts_idle_time_only_while_tasks_wait_elsewhere() -> None:
    from msgbench.accounting.counters import Counters
    from msgbench.results.aggregate import Aggregator
    from msgbench.run.control import Report

    # 100 tasks/s offered: the transit allowance is 2 members + 0.5 task
    agg = Aggregator(RunConfig(pattern="tasks", pubs=1, subs=2, rate=100.0))
    ms = 1_000_000

    def second(k: int, published: int, m0: list[int], m1: list[int],
               depth: dict[str, list[int | None]] | None = None, held0: int = 0) -> None:
        agg.add_report(Report(0, k, counters=Counters(published=published).to_json(),
                              members=[[0, *m0, held0]], depth=depth or {}))
        agg.add_report(Report(1, k, members=[[1, *m1, 0]]))

    # 0: member 1 idle 400 ms while member 0 held 3 queued behind its task all along
    second(0, 10, [0, 3, 10], [400 * ms, 0, 0])
    # 1: member 1 idle 200 ms, nothing held, nothing piled up, queue unknown: not counted
    second(1, 10, [0, 0, 10], [200 * ms, 0, 0])
    # 2-3: the queue holds tasks at both ends of second 3: member 0's idle there counts
    second(2, 10, [0, 0, 10], [0, 0, 0], {"g0": [5, None]})
    second(3, 10, [100 * ms, 0, 5], [0, 0, 5], {"g0": [2, 1]})
    # 4-5: 40 submitted and not received by anyone at both ends of second 5 (a pipe)
    second(4, 50, [0, 0, 10], [0, 0, 0])
    second(5, 10, [0, 0, 10], [300 * ms, 0, 0])
    # 6-8: everything received; 7: member 0 held 30 behind its task at both ends (its
    # fewest 0: it took them in batches), so member 1's idle counts; 8: it held none
    second(6, 0, [0, 0, 40], [0, 0, 0], held0=30)
    second(7, 0, [0, 0, 0], [250 * ms, 0, 0], held0=30)
    second(8, 0, [0, 0, 0], [500 * ms, 0, 0], held0=0)
    assert agg.idle_with_backlog([0, 1], "g0") == pytest.approx([0.1, 0.95])
    assert agg.queue_depth(3) == (2, 1) and agg.queue_depth(1) == (None, None)
    assert agg.queue_depth(2) == (5, None)


def test_whole_batches_are_accounted_as_one_by_one() -> None:
    """The numpy path of a member's accounting gives what the per-message path gives:
    tasks of other topics misrouted, probes heard, each stream's repeats found."""
    import asyncio

    from msgbench.run.shared import GroupSink
    from msgbench.run.sink import Buffers
    from msgbench.workload.envelope import HEADER, Kind

    rng = np.random.default_rng(7)
    msgs = []
    for _ in range(300):
        kind = int(rng.choice([Kind.MEASURE, Kind.MEASURE, Kind.PROBE, Kind.WARMUP]))
        msgs.append(HEADER.pack(kind, int(rng.integers(0, 3) == 0), int(rng.integers(0, 4)),
                                int(rng.integers(0, 200)), 5, 3) + bytes(16))
    sinks = []
    for chunk in (len(msgs), 1):
        sink = GroupSink(0, 0, "g0", Buffers())
        for i in range(0, len(msgs), chunk):
            asyncio.run(sink.handle(msgs[i : i + chunk]))
        sinks.append(sink)
    block, single = sinks
    assert block.counters() == single.counters()
    assert block.heard == single.heard and block.received_set.received == \
        single.received_set.received
    assert block.delivered > 0 and block.misrouted > 0

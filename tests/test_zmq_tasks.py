"""ZeroMQ task distribution on real sockets: the PUSH/PULL pipeline and the load-balancing
broker (``--pattern tasks``), their ledger, the broker's dispatch, and what each mode refuses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import zmq

from conftest import CliRun, msgbench_argv
from msgbench.api.target import TargetError
from msgbench.kit.procs import LOOPBACK, free_port
from msgbench.targets.zmq.lbbroker import CREDIT_KIND, READY_KIND, Dispatcher
from msgbench.targets.zmq.settings import Settings

SHORT = ["--duration", "1s", "--warmup", "200ms", "--drain-timeout", "1s"]
RATE = 2000
RECV_TIMEOUT_MS = 5000
FAULT_DEADLINE_S = 30.0
ENDS_WITHIN_S = 6.0
TOPIC = b"\x02t0"


def _run(run_cli: Any, *args: str) -> dict[str, Any]:
    r: CliRun = run_cli("run", "--target", "zmq", "--pattern", "tasks", *SHORT, "--json",
                        "--quiet", *args)
    assert r.returncode == 0, r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


@pytest.mark.parametrize(("mode", "transport"), [(None, "tcp"), ("pipeline", "ipc"),
                                                ("broker", "tcp"), ("broker", "ipc")])
def test_ledger_exact_at_a_moderate_rate(run_cli: Any, mode: str | None, transport: str) -> None:
    flags = ["--zmq-mode", mode] if mode else []
    doc = _run(run_cli, *flags, "--zmq-transport", transport, "--pubs", "2", "--subs", "4",
               "--rate", str(RATE))
    s = doc["summary"]
    assert doc["status"] == "ok", doc["reasons"]
    assert s["published"] == 2 * RATE  # open loop: rate x duration per producer
    assert s["expected"] == s["published"] == s["delivered"]
    assert s["lost"] == s["duplicated"] == s["misrouted"] == s["redelivered"] == 0
    assert s["latency_ns"]["count"] == s["delivered"]
    per_sub = {d["sub"]: d["delivered"] for d in doc["subscribers"]}
    assert sorted(per_sub) == [0, 1, 2, 3]
    assert sum(per_sub.values()) == s["delivered"]  # each task done by exactly one worker
    assert all(n > 0 for n in per_sub.values()), per_sub
    info = doc["target"]
    assert info["mode"] == (mode or "pipeline")  # the tasks pattern picks the pipeline
    roles = {p["role"]: p for p in doc["processes"]}
    if mode == "broker":
        assert info["credit"] == 1
        assert roles["zmq-broker"]["cpu_total_s"] > 0  # the broker's cost is in the result
    else:
        assert "zmq-broker" not in roles


def test_broker_credit_and_topics(run_cli: Any) -> None:
    # two groups (t0, t1), workers holding up to 8 tasks each: still each task done once,
    # and only by a worker of its own topic
    doc = _run(run_cli, "--zmq-mode", "broker", "--zmq-credit", "8", "--pubs", "2", "--subs",
               "4", "--topics", "2", "--rate", str(RATE))
    s = doc["summary"]
    assert doc["status"] == "ok", doc["reasons"]
    assert s["expected"] == s["delivered"] == 2 * RATE
    assert s["lost"] == s["duplicated"] == s["misrouted"] == 0
    assert doc["target"]["credit"] == 8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pattern", "tasks", "--zmq-mode", "mesh"], "carries --pattern broadcast only"),
        (["--pattern", "tasks", "--zmq-mode", "proxy"], "carries --pattern broadcast only"),
        (["--zmq-mode", "pipeline"], "carries --pattern tasks only"),
        (["--pattern", "broadcast", "--zmq-mode", "broker"], "carries --pattern tasks only"),
        (["--pattern", "tasks", "--zmq-nodrop"], "--zmq-nodrop is for PUB sockets"),
        (["--pattern", "tasks", "--zmq-mode", "broker", "--zmq-credit", "0"], "--zmq-credit"),
        (["--pattern", "tasks", "--zmq-credit", "4"], "needs --zmq-mode broker"),
    ],
)
def test_modes_refuse_the_other_pattern(run_cli: Any, args: list[str], message: str) -> None:
    r = run_cli("run", "--target", "zmq", *args, "--duration", "200ms")
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not r.result_files()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"zmq_mode": "broker", "zmq_credit": 5, "hwm": 4}, "above --hwm"),
        ({"zmq_mode": "pipeline", "zmq_nodrop": True}, "--zmq-nodrop"),
        ({"zmq_mode": "broker", "zmq_credit": True}, "--zmq-credit"),
    ],
)
def test_settings_reject_bad_task_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(TargetError, match=message):
        Settings.parse(options)


def test_settings_pick_the_mode_by_pattern() -> None:
    auto = Settings.parse({})
    assert auto.for_pattern("tasks").mode == "pipeline"
    assert auto.for_pattern("broadcast").mode == "mesh"
    with pytest.raises(TargetError, match="--zmq-nodrop"):
        Settings.parse({"zmq_nodrop": True}).for_pattern("tasks")


# -- the broker's dispatch, on real ROUTER / DEALER sockets -------------------------------


def _recv_all(sock: zmq.Socket[bytes], settle_s: float = 0.2) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline:
        if sock.poll(20):
            got.append(sock.recv())
    return got


def test_dispatcher_follows_credit_in_turn_and_keeps_order() -> None:
    with zmq.Context() as ctx, ctx.socket(zmq.ROUTER) as back:
        back.setsockopt(zmq.ROUTER_MANDATORY, 1)
        port = back.bind_to_random_port(f"tcp://{LOOPBACK}")
        workers = {}
        for wid in (b"wa", b"wb"):
            w = ctx.socket(zmq.DEALER)
            w.setsockopt(zmq.ROUTING_ID, wid)
            w.setsockopt(zmq.RCVTIMEO, RECV_TIMEOUT_MS)
            w.connect(f"tcp://{LOOPBACK}:{port}")
            w.send_multipart([READY_KIND, TOPIC, b"0"])  # the connection is up once heard
            workers[wid] = w
        for _ in workers:
            back.recv_multipart()
        d = Dispatcher(back)
        d.worker_says(b"wa", READY_KIND, TOPIC, 2)
        d.worker_says(b"wb", READY_KIND, TOPIC, 1)
        for i in range(6):
            d.task(TOPIC + b"task%d" % i)
        # a, b, a in turn while they have credit; the rest waits in the broker, in order
        assert _recv_all(workers[b"wa"]) == [b"task0", b"task2"]
        assert _recv_all(workers[b"wb"]) == [b"task1"]
        assert d.held == 3
        d.worker_says(b"wb", CREDIT_KIND, TOPIC, 1)
        assert _recv_all(workers[b"wb"]) == [b"task3"]
        d.task(b"\x02t1" + b"other")  # nobody serves t1: it waits, t0 is not held up
        d.worker_says(b"wa", READY_KIND, TOPIC, 5)  # a fresh READY replaces the credit
        assert _recv_all(workers[b"wa"]) == [b"task4", b"task5"]
        assert d.held == 1 and d.credit[b"wa"] == 3
        for w in workers.values():
            w.close(linger=0)


def test_broker_that_cannot_bind_exits_2() -> None:
    with zmq.Context() as ctx, ctx.socket(zmq.PUSH) as taken:
        port = taken.bind_to_random_port(f"tcp://{LOOPBACK}")
        r = subprocess.run([sys.executable, "-m", "msgbench.targets.zmq.lbbroker",
                            "--frontend", f"tcp://{LOOPBACK}:{port}",
                            "--backend", f"tcp://{LOOPBACK}:{free_port()}"],
                           capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("zmq-broker: cannot bind")
    assert len(r.stderr.strip().splitlines()) == 1


def test_killed_broker_ends_the_run(tmp_path: Path) -> None:
    argv = msgbench_argv("run", "--target", "zmq", "--pattern", "tasks", "--zmq-mode",
                         "broker", "--subs", "2", "--duration", "30s", "--warmup", "0s",
                         "--rate", "1000", "--out", str(tmp_path), "--json")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + FAULT_DEADLINE_S
    for line in proc.stderr:
        if "measuring" in line:
            break
        assert time.monotonic() < deadline, "run never started measuring"
    time.sleep(0.5)
    children = psutil.Process(proc.pid).children(recursive=True)
    brokers = [c for c in children if "msgbench.targets.zmq.lbbroker" in " ".join(c.cmdline())]
    assert len(brokers) == 1
    killed_at = time.monotonic()
    os.kill(brokers[0].pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=FAULT_DEADLINE_S)
    elapsed = time.monotonic() - killed_at
    doc = json.loads(out)
    assert proc.returncode == 1
    assert elapsed < ENDS_WITHIN_S, f"took {elapsed:.1f} s to notice the dead broker"
    assert doc["status"] == "failed" and doc["partial"] is True
    assert "zmq-broker" in doc["reasons"][0], doc["reasons"]
    assert doc["summary"]["delivered"] > 0, "what was measured before is kept"


# -- a slow worker, a killed worker -------------------------------------------------------

SLOW = ["--pubs", "2", "--subs", "4", "--work", "fixed:1ms", "--slow-worker", "0:x10",
        "--drain-timeout", "3s"]
"""4 workers at 1 ms a task, worker 0 ten times slower: the group can do 3 x 1000 + 100
tasks/s, above the 2 x 500/s offered, so neither design is overloaded as a whole."""


def test_slow_worker_round_robin_versus_broker(run_cli: Any) -> None:
    groups = {}
    for mode in ("pipeline", "broker"):
        # two seconds (a pile-up in a pipe shows from the second measured second on) at
        # 2 x 250/s: the slow worker gets 125/s for its 100/s, so 25 a second pile up and
        # drain in time, and the fast ones, 12 % busy, are idle even on a loaded machine
        doc = _run(run_cli, "--zmq-mode", mode, *SLOW, "--rate", "250", "--duration", "2s")
        s = doc["summary"]
        assert doc["status"] == "ok", doc["reasons"]
        assert s["lost"] == s["duplicated"] == 0 and s["delivered"] == s["expected"]
        g = groups[mode] = doc["groups"]["g0"]
        assert g["shares"] == [d["delivered"] for d in doc["subscribers"]]
    rr, lb = groups["pipeline"], groups["broker"]
    # PUSH deals in turn whatever the speed: four even shares, the slow worker the busiest
    assert max(rr["shares"]) <= 1.1 * min(rr["shares"]), rr
    assert rr["jain"] > 0.99
    assert rr["utilisation"][0] > max(rr["utilisation"][1:]), rr
    # the broker gives a task to whoever asked for one: the slow worker gets far fewer
    slow, *fast = lb["shares"]
    assert slow < 0.5 * min(fast), lb
    assert lb["held_max"] == [1, 1, 1, 1]  # --zmq-credit 1: one task at a time
    # round robin: the fast workers sit idle while tasks queue behind the slow one; the
    # broker never leaves a worker idle with a task to give
    assert sum(rr["idle_with_backlog_s"][1:]) > 0.1, rr
    assert rr["idle_with_backlog_s"][0] < 0.01, rr  # the slow one always had work
    assert lb["idle_with_backlog_total_s"] < min(0.05, rr["idle_with_backlog_total_s"] / 4), lb


@pytest.mark.parametrize("mode", ["pipeline", "broker"])
def test_killed_worker_loses_what_it_held_counted_exactly(run_cli: Any, mode: str) -> None:
    # three processes: the producers, members {0, 2} (killed 0.5 s into the window) and
    # members {1, 3}. The slow member 0 has a queue by then: in the pipeline PUSH filled it
    # (round robin), in the broker it holds one task (its credit) at most.
    doc = _run(run_cli, "--zmq-mode", mode, *SLOW, "--rate", "500", "--procs", "3",
               "--kill-worker", "500ms", "--duration", "1500ms")
    s = doc["summary"]
    assert doc["status"] == "degraded"
    assert any("--kill-worker" in r for r in doc["reasons"]), doc["reasons"]
    assert s["expected"] == s["published"] == 2 * 750
    assert s["delivered"] + s["lost"] == s["expected"]  # ZeroMQ has no acks: no redelivery
    assert s["duplicated"] == s["redelivered"] == 0
    killed = [d for d in doc["subscribers"] if d["sub"] in (0, 2)]
    assert s["orphaned"] == sum(d["orphaned"] for d in killed)
    assert s["lost"] >= s["orphaned"]  # in hand at the kill, plus what was queued to it
    if mode == "pipeline":
        assert s["lost"] > 10, s  # the slow member's pre-assigned queue went with it
    else:
        assert s["lost"] <= len(killed) * 1, s  # at most its credit per killed member

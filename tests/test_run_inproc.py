"""End to end: real ``msgbench run`` processes on the in-process target."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from conftest import CliRun, msgbench_argv

SHORT = ["--duration", "700ms", "--warmup", "200ms"]
FAULT_DEADLINE_S = 15.0


def test_closed_loop_delivers_everything(run_cli: Any) -> None:
    r: CliRun = run_cli("run", "--subs", "4", *SHORT, "--quiet")
    assert r.returncode == 0, r.stderr
    doc = r.result()
    s = doc["summary"]
    assert doc["status"] == "ok", doc["reasons"]
    assert s["published"] > 0
    assert s["expected"] == 4 * s["published"]
    assert s["delivered"] == s["expected"]
    assert s["lost"] == s["duplicated"] == s["reordered"] == 0
    assert s["latency_ns"]["count"] == s["delivered"]
    assert 0 < s["latency_ns"]["p50"] <= s["latency_ns"]["p99"] <= s["latency_ns"]["max"]
    assert s["deliveries_per_s"] > 0 and s["msgs_per_cpu_s"] > 0
    assert doc["latency_mode"].startswith("closed-loop")
    roles = {p["role"] for p in doc["processes"]}
    assert {"coordinator", "worker 0"} <= roles
    assert all(p["peak_rss_bytes"] > 0 for p in doc["processes"])
    env = doc["environment"]
    assert env["python"] and env["cores"] >= 1 and env["libraries"]["hdrhistogram"]


def test_rate_limited_run_keeps_its_rate_and_topics(run_cli: Any) -> None:
    r = run_cli(
        "run",
        "--pubs",
        "2",
        "--subs",
        "5",
        "--topics",
        "2",
        "--rate",
        "2000",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--json",
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # stdout is pure JSON
    s = doc["summary"]
    # open loop: exactly rate x duration messages per publisher, whatever the machine did
    assert s["published"] == 2 * 2000
    # each publisher alternates topics; topic 0 has 3 subscribers, topic 1 has 2
    assert s["expected"] == 2 * (1000 * 3 + 1000 * 2)
    assert s["delivered"] == s["expected"]
    assert doc["status"] == "ok"
    assert s["deliveries_per_s"] == pytest.approx(s["expected"], rel=0.1)
    assert s["publish_delay_ns"]["count"] == 4000
    assert doc["latency_mode"] == "open-loop"
    per_sub = {d["sub"]: d["delivered"] for d in doc["subscribers"]}
    assert per_sub == {0: 2000, 1: 2000, 2: 2000, 3: 2000, 4: 2000}
    assert sum(x["delivered"] for x in doc["series"]) == s["delivered"]


def test_human_output_has_the_summary(run_cli: Any) -> None:
    r = run_cli("run", "--subs", "2", *SHORT)
    assert r.returncode == 0, r.stderr
    for word in ("status", "expected / delivered", "p99", "deliveries/s", "worker 0"):
        assert word in r.stdout
    assert "measuring" in r.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "nope"], "unknown target"),
        (["--size", "8"], "header"),
        (["--rate", "0"], "rate"),
        (["--subs", "0"], "--subs"),
        (["--duration", "ten"], "--duration"),
        (["--warmup", "5q"], "--warmup"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(run_cli: Any, args: list[str], message: str) -> None:
    r = run_cli("run", *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not r.result_files()


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _start_long_run(out: Path, *extra: str) -> subprocess.Popen[str]:
    argv = msgbench_argv(
        "run",
        "--subs",
        "2",
        "--duration",
        "30s",
        "--warmup",
        "0s",
        "--rate",
        "1000",
        "--out",
        str(out),
        "--json",
        *extra,
    )
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_measuring(proc: subprocess.Popen[str]) -> list[psutil.Process]:
    """Wait until the run is measuring; return the worker processes."""
    assert proc.stderr is not None
    deadline = time.monotonic() + FAULT_DEADLINE_S
    for line in proc.stderr:
        if "measuring" in line:
            break
        assert time.monotonic() < deadline, "run never started measuring"
    workers = [c for c in _children(proc.pid) if "spawn_main" in " ".join(c.cmdline())]
    assert workers, "no worker process found"
    return workers


def _finish(proc: subprocess.Popen[str], started: float) -> tuple[dict[str, Any], float]:
    out, _ = proc.communicate(timeout=FAULT_DEADLINE_S)
    elapsed = time.monotonic() - started
    return json.loads(out), elapsed


def _assert_no_orphans(children: list[psutil.Process]) -> None:
    time.sleep(0.2)
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"left behind: {alive}"


def test_killed_worker_ends_the_run_with_a_partial_result(tmp_path: Path) -> None:
    proc = _start_long_run(tmp_path)
    workers = _wait_measuring(proc)
    time.sleep(1.2)
    killed_at = time.monotonic()
    os.kill(workers[0].pid, signal.SIGKILL)
    doc, elapsed = _finish(proc, killed_at)
    assert proc.returncode == 1
    assert elapsed < 5, f"run took {elapsed:.1f} s to notice the dead worker"
    assert doc["status"] == "failed" and doc["partial"] is True
    assert "worker 0" in doc["reasons"][0] and "exited" in doc["reasons"][0]
    assert doc["summary"]["delivered"] > 0, "what was measured before the crash is kept"
    assert len(list(tmp_path.glob("*.json"))) == 1
    _assert_no_orphans(workers)


def test_hung_worker_is_detected(tmp_path: Path) -> None:
    proc = _start_long_run(tmp_path)
    workers = _wait_measuring(proc)
    stopped_at = time.monotonic()
    os.kill(workers[0].pid, signal.SIGSTOP)
    doc, elapsed = _finish(proc, stopped_at)
    assert proc.returncode == 1
    assert elapsed < 12
    assert "sent nothing" in doc["reasons"][0]
    _assert_no_orphans(workers)


def test_ctrl_c_writes_a_partial_result_and_leaves_no_child(tmp_path: Path) -> None:
    proc = _start_long_run(tmp_path)
    workers = _wait_measuring(proc)
    time.sleep(1.2)
    sent_at = time.monotonic()
    # a terminal's Ctrl-C reaches the whole foreground group: coordinator and workers
    for p in [psutil.Process(proc.pid), *workers]:
        p.send_signal(signal.SIGINT)
    doc, elapsed = _finish(proc, sent_at)
    assert proc.returncode == 1
    assert elapsed < 8
    assert doc["partial"] is True and "interrupted" in doc["reasons"][0]
    assert doc["summary"]["delivered"] > 0
    _assert_no_orphans(workers)

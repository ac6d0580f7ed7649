"""The fault matrix of the driver's own processes, killed or stopped mid-measurement (a
target's servers: tests/test_fault_contract.py, from each target's ``FaultPlan``).

For each (process, signal) the run must end within seconds as ``failed``, name
the process, and keep a partial result whose counts are exact over the time
actually measured: expected from what was published, lost = expected -
delivered, rates over the measured time (shorter than configured), and the CPU
a dead process used before it died.
"""

from __future__ import annotations

import contextlib
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

from conftest import msgbench_argv

FAULT_AT_S = 1.5
"""How far into the measured window the fault comes."""
DURATION = "8s"
KILL_DEADLINE_S = 5.0
STOP_DEADLINE_S = 6.0 + 1.0
"""SIGSTOP: a stopped worker is noticed by its missing heartbeat (5 s), a stopped server
by its state (1 s); plus a second."""
START_TIMEOUT_S = 60.0

# (id, run arguments, how to find the process among the run's descendants, its role's name).
# The driver's own processes only: every target's servers are broken through its FaultPlan by
# tests/test_fault_contract.py, which reuses this module's helpers.
KINDS = [
    ("worker", ["-t", "inproc"], lambda c: "spawn_main" in c, "worker 0"),
]


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _cmd(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:
        return ""


def _start(tmp_path: Path, args: list[str]) -> subprocess.Popen[str]:
    argv = msgbench_argv("run", *args, "--pubs", "2", "--subs", "4", "--rate", "2k",
                         "-d", DURATION, "-w", "500ms", "--drain-timeout", "1s", "--json",
                         "--out", str(tmp_path))
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait_measuring(proc: subprocess.Popen[str]) -> None:
    assert proc.stderr is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        if "measuring" in line:
            return
    proc.kill()
    pytest.fail(f"the run never started measuring: {proc.stderr.read()}")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP], ids=["kill-9", "sigstop"])
@pytest.mark.parametrize(("kind", "args", "match", "role"), [
    pytest.param(*k, id=k[0]) for k in KINDS])
def test_a_dead_or_stopped_process_ends_the_run_named_with_exact_counts(
        tmp_path: Path, kind: str, args: list[str], match: Any, role: str,
        sig: signal.Signals) -> None:
    proc = _start(tmp_path, args)
    _wait_measuring(proc)
    time.sleep(FAULT_AT_S)
    everyone = _descendants(proc.pid)
    victims = [p for p in everyone if match(_cmd(p))]
    assert victims, f"no {kind} among {[_cmd(p) for p in everyone]}"
    victim = victims[0]
    hit_at = time.monotonic()
    os.kill(victim.pid, sig)
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        if sig is signal.SIGSTOP:
            for p in everyone:  # nothing may stay stopped behind the test
                with contextlib.suppress(psutil.Error):
                    p.send_signal(signal.SIGCONT)
    elapsed = time.monotonic() - hit_at
    deadline = KILL_DEADLINE_S if sig is signal.SIGKILL else STOP_DEADLINE_S
    assert elapsed < deadline, f"{kind} {sig.name}: the run took {elapsed:.1f} s to end"
    assert proc.returncode == 1, err
    doc = json.loads(out)
    assert doc["status"] == "failed" and doc["partial"] is True
    assert any(role in r for r in doc["reasons"][:2]), doc["reasons"]
    s = doc["summary"]
    assert s["published"] > 0 and s["expected"] == s["published"] * 4, s
    assert s["lost"] == max(0, s["expected"] - s["delivered"])
    assert 0 < s["duration_s"] < 8.0, "rates are over the time actually measured"
    assert s["deliveries_per_s"] == pytest.approx(
        s["delivered_in_window"] / s["duration_s"], rel=1e-6)
    if sig is signal.SIGKILL and kind != "worker":
        dead = [p for p in doc["processes"] if p["pid"] == victim.pid]
        assert dead and dead[0]["cpu_s"] > 0, "a dead process keeps the CPU it used"
    time.sleep(0.3)
    left = [p for p in everyone if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, f"left behind: {[_cmd(p) for p in left]}"


def test_per_subscriber_data_is_complete_at_many_subscribers_on_one_worker(
        tmp_path: Path) -> None:
    n = 5000
    r = subprocess.run(msgbench_argv("run", "-t", "inproc", "--subs", str(n), "--rate", "10",
                                     "-d", "1s", "-w", "200ms", "--json", "--quiet",
                                     "--out", str(tmp_path)),
                       capture_output=True, text=True, timeout=180, check=False)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["status"] == "ok", doc["reasons"]
    assert len(doc["subscribers"]) == n
    assert sum(s["delivered"] for s in doc["subscribers"]) == doc["summary"]["delivered"]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))

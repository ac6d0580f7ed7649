"""CPU to the nanosecond: schedstat per thread, run delay, switches and CPU pressure."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from msgbench.results import costs
from msgbench.results.costs import (
    CostMeter,
    ProcSample,
    read_pressure,
    read_schedstat,
    read_steal,
)

BUSY = """
import sys, threading, time
def spin(s):  # s seconds of this thread's own CPU, however contended the machine
    end = time.thread_time() + s
    while time.thread_time() < end:
        pass
seconds, n = float(sys.argv[1]), int(sys.argv[2])
threads = [threading.Thread(target=spin, args=(seconds,)) for _ in range(n)]
for t in threads: t.start()
for t in threads: t.join()
print("done", flush=True)
sys.stdin.read()
"""
"""Spins N threads for S CPU-seconds each, then idles until its stdin closes."""


def _busy(seconds: float, threads: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", BUSY, str(seconds), str(threads)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def test_cpu_counts_every_thread_the_exited_included_and_agrees_with_the_tick_count() -> None:
    proc = _busy(0.2, 2)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "done\n"
        time.sleep(0.1)  # the spinners' OS threads are gone too
        s = read_schedstat(proc.pid)
        assert s is not None
        ticks = psutil.Process(proc.pid).cpu_times()
        # psutil counts in 10 ms ticks (children excluded): within a few ticks of ours
        assert abs(s.run_ns / 1e9 - (ticks.user + ticks.system)) < 0.05
        assert s.wait_ns >= 0 and s.nivcsw >= 0
        # the spinners have ended, their CPU stays: more than the live threads account for
        assert s.run_ns >= 0.4e9 > sum(r for r, _ in s.threads.values())
    finally:
        proc.kill()
        proc.wait()


def test_a_gone_process_reads_none() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert read_schedstat(proc.pid) is None


def test_meter_window_share_wait_and_a_dead_process_keeps_its_cpu() -> None:
    meter = CostMeter()
    busy = _busy(60.0, 1)  # spins through the whole window, then is killed
    idle = subprocess.Popen(
        [sys.executable, "-c", "import sys; print('up', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert idle.stdout is not None and idle.stdout.readline() == "up\n"  # started up
        meter.add("busy", busy.pid)
        meter.add("idle", idle.pid)
        time.sleep(0.2)
        meter.mark_measure_start()
        time.sleep(0.6)
        meter.mark_measure_end()
        time.sleep(0.1)
        meter.sample()
        busy.kill()
        busy.wait()
        meter.sample()  # reads nothing for the dead one: its last sample stands
        by_role = {c.role: c for c in meter.costs()}
    finally:
        for p in (busy, idle):
            p.kill()
            p.wait()
    window = meter.window_s()
    assert 0.55 < window < 2.0
    b, i = by_role["busy"], by_role["idle"]
    # The spinner is runnable all the time: running or waiting for a CPU, except for what
    # a hypervisor steals (neither; this machine is a VM shared with others).
    assert 0.7 < b.busiest_thread_share < 1.05
    assert 0.7 < (b.cpu_s + b.cpu_wait_s) / window < 1.05
    assert b.core_share == pytest.approx(b.cpu_s / window, rel=0.05)  # its own samples apart
    assert b.cpu_total_s > b.cpu_s > 0  # never 0 for the dead: what it used up to its death
    assert i.core_share < 0.05 and i.busiest_thread_share < 0.05
    doc = b.to_json()
    assert {"cpu_s", "cpu_total_s", "cpu_wait_s", "core_share", "nivcsw"} <= set(doc)


def test_a_reaped_process_reading_zeros_keeps_its_last_sample() -> None:
    old = ProcSample(5_000, 10, 1)
    assert costs._later(ProcSample(0, 0, 0), old) is old
    new = ProcSample(6_000, 10, 1)
    assert costs._later(new, old) is new


def test_pressure_is_parsed_and_missing_psi_reads_none(tmp_path: Path) -> None:
    f = tmp_path / "cpu"
    f.write_text("some avg10=1.00 avg60=0.50 avg300=0.10 total=123456\n"
                 "full avg10=0.00 avg60=0.00 avg300=0.00 total=789\n")
    assert read_pressure(str(f)) == (123456, 789)
    assert read_pressure(str(tmp_path / "absent")) is None
    f.write_text("some avg10=1.00 avg60=0.50 avg300=0.10 total=5\n")  # older kernels: no full
    assert read_pressure(str(f)) == (5, 0)


def test_meter_pressure_over_the_window() -> None:
    meter = CostMeter()
    meter.add("me", os.getpid())
    meter.mark_measure_start()
    time.sleep(0.05)
    meter.mark_measure_end()
    p = meter.pressure()
    if read_pressure() is not None:
        assert {"some", "full"} <= set(p)
    if read_steal() is not None:
        assert "steal" in p
    assert all(v >= 0 for v in p.values())


def test_steal_is_read_from_the_cpu_line(tmp_path: Path) -> None:
    f = tmp_path / "stat"
    f.write_text("cpu  10 0 5 100 1 0 2 300 0 0\ncpu0 1 2 3\n")
    assert read_steal(str(f)) == 300 / os.sysconf("SC_CLK_TCK")
    f.write_text("cpu  10 0 5 100\n")
    assert read_steal(str(f)) is None

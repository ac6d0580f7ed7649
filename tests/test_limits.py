"""Every result names its first limit: synthetic costs, and real runs built to saturate."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from conftest import RUN_TIMEOUT_S, msgbench_argv
from msgbench.analysis.report import Row, render
from msgbench.cli.console import summary_table
from msgbench.results.limits import (
    CONTENDED_SHARE,
    SATURATED_SHARE,
    SCHEDULE_P99_NS,
    name_limits,
)
from msgbench.results.model import RunResult

pytestmark = pytest.mark.serial  # saturation and contention need the cores to themselves

WINDOW_S = 10.0
KINDS = {"worker 0": "publisher", "worker 1": "subscriber"}


def proc(role: str, core: float, wait: float = 0.0, busiest: float | None = None
         ) -> dict[str, Any]:
    """A result ``processes`` entry with these shares of a 10 s window."""
    return {"role": role, "cpu_s": core * WINDOW_S, "core_share": core,
            "cpu_wait_s": wait * WINDOW_S,
            "busiest_thread_share": core + wait if busiest is None else busiest}


def test_a_saturated_subscriber_worker_says_the_run_measures_msgbench() -> None:
    lines = name_limits([proc("coordinator", 0.01), proc("worker 0", 0.3),
                         proc("worker 1", 0.99)], WINDOW_S, None, {}, KINDS)
    assert lines == [
        "subscriber worker 1 at 99 % of a core: this run measures msgbench's subscribers, "
        "not the target; spread them with --procs or add agents"
    ]


def test_a_saturated_server_is_named_as_the_limit() -> None:
    lines = name_limits([proc("worker 0", 0.4), proc("worker 1", 0.5),
                         proc("chat-server 0", 0.98)], WINDOW_S, None, {}, KINDS)
    assert lines == ["chat-server 0 at 98 % of a core: the server is the limit"]


def test_msgbench_comes_before_the_server_and_the_busiest_first() -> None:
    lines = name_limits([proc("chat-server 0", 0.9), proc("worker 1", 0.88),
                         proc("worker 0", 0.97)], WINDOW_S, None, {}, KINDS)
    assert [line.split(" at ")[0] for line in lines] == [
        "publisher worker 0", "subscriber worker 1", "chat-server 0"]


def test_a_multithreaded_server_is_saturated_by_its_busiest_thread() -> None:
    # 130 % of a core over its threads, but no single thread full: not saturated
    assert name_limits([proc("redis-server", 1.3, busiest=0.6)], WINDOW_S) == []
    lines = name_limits([proc("redis-server", 1.3, busiest=0.97)], WINDOW_S)
    assert lines == ["redis-server at 130 % of a core: the server is the limit"]


def test_publishers_off_schedule_say_so_with_the_figure() -> None:
    assert name_limits([proc("worker 0", 0.2)], WINDOW_S, SCHEDULE_P99_NS) == []
    assert name_limits([proc("worker 0", 0.2)], WINDOW_S, 1_300_000) == [
        "publishers could not keep their schedule: publish delay p99 1.3 ms"]


def test_waiting_for_a_cpu_and_a_busy_machine_are_named() -> None:
    lines = name_limits([proc("worker 0", 0.5, wait=0.23), proc("worker 1", 0.2, wait=0.02)],
                        WINDOW_S, None, {"some": 0.4, "full": 0.0, "steal": 0.08}, KINDS)
    assert lines == ["waited for a CPU (share of the window, threads summed): worker 0 23 %; "
                     "CPU pressure 40 % of the window (machine-wide); the hypervisor took 8 % "
                     "of the CPUs' time"]
    assert name_limits([proc("worker 0", 0.1)], WINDOW_S, None, {"some": 0.5}) == [
        "the machine was busy: CPU pressure 50 % of the window (machine-wide)"]


def test_a_starved_saturated_process_puts_the_machine_first() -> None:
    lines = name_limits([proc("worker 1", 0.3, wait=CONTENDED_SHARE + 0.3)], WINDOW_S, None,
                        {"some": 0.9}, KINDS)
    assert lines[0].endswith("the machine's cores are the limit")
    assert lines[1].startswith("subscriber worker 1 at 30 % of a core, its threads waiting "
                               "for a CPU another 55 %")


def test_nothing_to_name_and_no_window() -> None:
    quiet = [proc("worker 0", SATURATED_SHARE - 0.1), proc("coordinator", 0.01)]
    assert name_limits(quiet, WINDOW_S, 20_000, {"some": 0.05}) == []
    assert name_limits([proc("worker 0", 0.99)], 0.0) == []


def _run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """One real run. The machine may starve it (other jobs on a shared 2-core host): then its
    first line names the machine's cores, and the saturated process is still named after it
    (see ``test_a_starved_saturated_process_puts_the_machine_first``): a test built on a
    process that needs more than a core holds either way, and never retries or skips."""
    return _run_once(tmp_path, *args, env=env)


def _run_once(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    proc_ = subprocess.run(
        msgbench_argv("run", *args, "-d", "2s", "-w", "500ms", "--drain-timeout", "500ms",
                      "--json", "-q", "-o", str(tmp_path)),
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False,
        env={**os.environ, **(env or {})})
    assert proc_.returncode == 0, proc_.stderr
    doc: dict[str, Any] = json.loads(proc_.stdout)
    return doc


def _named(doc: dict[str, Any], role: str) -> bool:
    """Whether ``role``'s process really was saturated and a line says so."""
    p = next(p for p in doc["processes"] if p["role"] == role)
    return p["busiest_thread_share"] >= SATURATED_SHARE and any(
        role + " at " in line for line in doc["limits"])


def test_a_run_built_to_saturate_its_subscribers_names_them(tmp_path: Path) -> None:
    """ZeroMQ 1 -> 1 at 20k/s, each delivery burning 100 us in the subscriber: it needs two
    cores, has one; the ZeroMQ mesh has no server, the publisher idles."""
    doc = _run(tmp_path, "-t", "zmq", "--rate", "20k", "--hwm", "0",
               env={"MSGBENCH_INJECT_COST_NS": "100000"})
    assert _named(doc, "worker 1"), doc["limits"]
    line = next(x for x in doc["limits"] if "worker 1 at" in x)
    assert line.startswith("subscriber worker 1") and "measures msgbench's subscribers" in line
    # nothing but the machine itself may come before it
    first = doc["limits"][0]
    assert first == line or first.endswith("the machine's cores are the limit"), doc["limits"]
    assert doc["processes"][0]["core_share"] >= 0  # shares recorded per process


def test_a_run_built_to_saturate_a_server_names_it(tmp_path: Path) -> None:
    """The chat server relaying one publisher in closed loop to four subscribers: the
    server parses each frame once and writes it four times."""
    doc = _run(tmp_path, "-t", "ws", "--rate", "max", "--subs", "4")
    assert _named(doc, "chat-server 0"), (doc["limits"], doc["processes"])
    line = next(x for x in doc["limits"] if "chat-server 0 at" in x)
    assert line.endswith("the server is the limit")
    assert sys.platform != "linux" or doc["cpu_pressure"]
    # the summary and the report show it
    result = RunResult.from_json(doc)
    buf = io.StringIO()
    Console(file=buf, width=400, no_color=True).print(summary_table(result, None))
    text = buf.getvalue()
    assert "first limit" in text and doc["limits"][0][:40] in text
    assert "% of a core, waited" in text
    row = Row.from_result("x.json", result)
    assert row.limit == doc["limits"][0]
    assert render([row], "csv").splitlines()[0].split(",")[-2] == "limit"


def _recorded(lines: dict[int, list[str]]) -> Any:
    """A reader that replays ``/proc/PID/task/TID/schedstat`` lines ("run_ns wait_ns slices"),
    one list entry per read, each read one second after the last."""
    from msgbench.results.costs import ProcSample

    reads = {pid: iter(seq) for pid, seq in lines.items()}
    clock = {pid: 0 for pid in lines}

    def read(pid: int) -> ProcSample:
        ran, waited, _ = next(reads[pid]).split()
        clock[pid] += 1_000_000_000
        return ProcSample(int(ran), int(waited), 0, {pid: (int(ran), int(waited))}, clock[pid])
    return read


def test_limits_from_recorded_schedstat_a_starved_worker_and_a_full_server() -> None:
    """Recorded readings (add, mark start, mark end, the last sample) through the real
    CostMeter: a worker that ran 40 % and waited 55 % of each second, a server that ran a
    whole core, a coordinator that idled."""
    from msgbench.results.costs import CostMeter

    second, read_at = 1_000_000_000, [0, 1, 2, 3, 4]
    worker = [f"{int(0.4 * second) * i} {int(0.55 * second) * i} {i}" for i in read_at]
    server = [f"{second * i} 0 {i}" for i in read_at]
    idle = [f"{1_000_000 * i} 0 {i}" for i in read_at]
    meter = CostMeter(reader=_recorded({11: worker, 12: server, 13: idle}))
    for pid, role in ((11, "worker 0"), (12, "redis-server"), (13, "coordinator")):
        meter.roles[pid] = role
    meter.sample()  # the first read of each: what ``add`` takes as its start
    meter._first = dict(meter._last)
    meter.mark_measure_start()
    meter.mark_measure_end()
    costs = {c.role: c.to_json() for c in meter.costs()}
    assert costs["worker 0"]["core_share"] == pytest.approx(0.4)
    assert costs["worker 0"]["busiest_thread_share"] == pytest.approx(0.95)
    lines = name_limits(list(costs.values()), 1.0, None, {}, {"worker 0": "subscriber"})
    assert lines[0] == ("waited for a CPU (share of the window, threads summed): worker 0 55 %: "
                        "the machine's cores are the limit")
    assert lines[1].startswith("subscriber worker 0 at 40 % of a core, its threads waiting for "
                               "a CPU another 55 %: this run measures msgbench's subscribers")
    assert lines[2] == "redis-server at 100 % of a core: the server is the limit"
    assert len(lines) == 3


CPU_BURNER = "import time\nend = time.monotonic() + {s}\nwhile time.monotonic() < end: pass"


def test_a_run_sharing_its_one_cpu_with_a_burner_names_the_machine_first(
        tmp_path: Path) -> None:
    """Contention made certain: the run and a busy loop confined to the same CPU, so the
    closed-loop worker can only run about half of the time and waits for the rest."""
    cpu = min(os.sched_getaffinity(0))

    def pin() -> None:
        os.sched_setaffinity(0, {cpu})
    burner = subprocess.Popen([sys.executable, "-c", CPU_BURNER.format(s=RUN_TIMEOUT_S)],
                              preexec_fn=pin)
    try:
        proc_ = subprocess.run(
            msgbench_argv("run", "-t", "inproc", "--rate", "max", "-d", "2s", "-w", "500ms",
                          "--drain-timeout", "500ms", "--json", "-q", "-o", str(tmp_path)),
            capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False,
            preexec_fn=pin)
    finally:
        burner.kill()
        burner.wait()
    assert proc_.returncode == 0, proc_.stderr
    doc = json.loads(proc_.stdout)
    worker = next(p for p in doc["processes"] if p["role"] == "worker 0")
    window_s = doc["summary"]["duration_s"]
    assert worker["cpu_wait_s"] / window_s >= CONTENDED_SHARE, doc["processes"]
    assert doc["limits"][0].startswith("waited for a CPU"), doc["limits"]
    assert doc["limits"][0].endswith("the machine's cores are the limit"), doc["limits"]
    assert any(line.startswith("worker 0 (publishers and subscribers) at ")
               for line in doc["limits"][1:]), doc["limits"]

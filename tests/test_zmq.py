"""The ZeroMQ target on real sockets: mesh and forwarder, tcp and ipc, filtering, HWM, faults."""

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
from msgbench.api.target import ServeSpec, TargetError
from msgbench.kit.procs import LOOPBACK, free_port
from msgbench.targets.zmq.mesh import Settings, ZmqTarget, topic_prefix
from msgbench.targets.zmq.proxy import READY

SHORT = ["--duration", "500ms", "--warmup", "100ms", "--drain-timeout", "500ms"]
FAULT_DEADLINE_S = 20.0
ENDS_WITHIN_S = 6.0


def _run_ok(run_cli: Any, *args: str) -> dict[str, Any]:
    r: CliRun = run_cli("run", "--target", "zmq", *SHORT, "--json", "--quiet", *args)
    assert r.returncode == 0, r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def _assert_exact(doc: dict[str, Any]) -> None:
    s = doc["summary"]
    assert doc["status"] == "ok", doc["reasons"]
    assert s["published"] > 0
    assert s["delivered"] == s["expected"]
    assert s["lost"] == s["duplicated"] == s["reordered"] == s["misrouted"] == 0
    assert s["latency_ns"]["count"] == s["delivered"]


@pytest.mark.parametrize(("mode", "transport"), [("mesh", "tcp"), ("proxy", "ipc"),
                                                ("mesh", "ipc")])
def test_exact_counts_at_a_moderate_rate(run_cli: Any, mode: str, transport: str) -> None:
    doc = _run_ok(run_cli, "--zmq-mode", mode, "--zmq-transport", transport, "--pubs", "2",
                  "--subs", "3", "--rate", "2000")
    _assert_exact(doc)
    s = doc["summary"]
    assert s["published"] == 2 * 1000  # open loop: rate x duration per publisher
    assert s["expected"] == 3 * 2000
    assert {d["sub"]: d["delivered"] for d in doc["subscribers"]} == {0: 2000, 1: 2000, 2: 2000}
    info = doc["target"]
    assert (info["mode"], info["transport"]) == (mode, transport)
    assert info["libzmq"] == zmq.zmq_version() and info["hwm"] == 1000
    roles = {p["role"]: p for p in doc["processes"]}
    if mode == "proxy":
        # the forwarder's cost is part of the result
        assert roles["zmq-proxy"]["peak_rss_bytes"] > 0
        assert roles["zmq-proxy"]["cpu_total_s"] > 0
    else:
        assert "zmq-proxy" not in roles


def test_prefix_filtering_and_slow_joiners(run_cli: Any) -> None:
    # 11 topics: subscribers of t1 must get nothing of t10 (nor t0 of t10 ...). 24
    # subscribers connect before the 3 publishers bind: the probe phase must hold the run
    # until every subscription has propagated, or the first messages would be lost.
    doc = _run_ok(run_cli, "--pubs", "3", "--subs", "24", "--topics", "11", "--rate", "2200")
    _assert_exact(doc)
    per_sub = {d["sub"]: d for d in doc["subscribers"]}
    assert all(d["misrouted"] == 0 for d in per_sub.values())
    # each publisher sends 1100 measured messages, 100 on each topic
    assert {k: d["delivered"] for k, d in per_sub.items()} == {k: 300 for k in range(24)}
    assert doc["summary"]["expected"] == 24 * 300


def test_nodrop_waits_at_the_mark_instead_of_losing(run_cli: Any) -> None:
    # closed loop: the publisher outruns the subscriber; XPUB_NODROP turns that into waiting
    doc = _run_ok(run_cli, "--zmq-nodrop", "--hwm", "100")
    _assert_exact(doc)
    assert doc["target"]["nodrop"] is True


def test_hwm_drops_show_as_loss(run_cli: Any) -> None:
    # A slow subscriber (at most ~1000 messages/s), a tiny high-water mark and small kernel
    # socket buffers, so nothing but ZeroMQ's queues can hold the backlog: ZeroMQ drops,
    # msgbench must say so, and the run must still end promptly.
    started = time.monotonic()
    doc = _run_ok(run_cli, "--hwm", "10", "--zmq-sockbuf", "8192", "--size", "1024",
                  "--sub-delay", "1ms", "--rate", "4000")
    elapsed = time.monotonic() - started
    s = doc["summary"]
    assert doc["status"] == "degraded"
    assert s["lost"] > 0 and s["delivered"] + s["lost"] == s["expected"] == 2000
    assert any("lost" in r for r in doc["reasons"]), doc["reasons"]
    assert (doc["target"]["hwm"], doc["target"]["sockbuf"]) == (10, 8192)
    assert elapsed < 30, f"a lossy run took {elapsed:.1f} s"


def test_probe_names_the_pairs_that_never_hear(run_cli: Any) -> None:
    # A forwarder address where nothing listens: no subscriber can ever hear a publisher.
    dead = f"tcp://{LOOPBACK}:{free_port()},tcp://{LOOPBACK}:{free_port()}"
    started = time.monotonic()
    r = run_cli("run", "--target", "zmq", "--zmq-mode", "proxy", "--zmq-proxy", dead,
                "--pubs", "2", "--subs", "2", "--rate", "1000", "--probe-timeout", "1s", *SHORT,
                "--json", "--quiet")
    elapsed = time.monotonic() - started
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["status"] == "failed"
    first = doc["reasons"][0]
    assert "probe timed out after 1 s" in first
    assert "subscriber 0 never heard publisher 0" in first
    assert "subscriber 1 never heard publisher 1" in first
    assert elapsed < 20


def test_external_forwarder_program(run_cli: Any, tmp_path: Path) -> None:
    xsub, xpub = (f"tcp://{LOOPBACK}:{free_port()}" for _ in range(2))
    argv = [sys.executable, "-m", "msgbench.targets.zmq.proxy", "--xsub", xsub, "--xpub", xpub]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and READY in proc.stdout.readline()
        doc = _run_ok(run_cli, "--zmq-mode", "proxy", "--zmq-proxy", f"{xsub},{xpub}",
                      "--subs", "2", "--rate", "2000")
        _assert_exact(doc)
        assert doc["target"]["forwarder"] == "external"
        assert proc.poll() is None, "msgbench must not stop a forwarder it did not start"
    finally:
        proc.terminate()
        proc.wait(5)


def test_forwarder_that_cannot_bind_exits_2() -> None:
    with zmq.Context() as ctx, ctx.socket(zmq.PUB) as taken:
        port = taken.bind_to_random_port(f"tcp://{LOOPBACK}")
        addr = f"tcp://{LOOPBACK}:{port}"
        r = subprocess.run([sys.executable, "-m", "msgbench.targets.zmq.proxy", "--xsub", addr,
                            "--xpub", f"tcp://{LOOPBACK}:{free_port()}"],
                           capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("zmq-proxy: cannot bind")
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("mode", ["mesh", "proxy"])
def test_serve_ipc_cleans_up(mode: str) -> None:
    spec = ServeSpec(2, 2, ("t0",), {"zmq_mode": mode, "zmq_transport": "ipc"})
    with ZmqTarget().serve(spec) as ep:
        addrs = ep.data["pubs"] if mode == "mesh" else [ep.data["xsub"], ep.data["xpub"]]
        assert all(a.startswith("ipc://") for a in addrs)
        workdir = Path(addrs[0].removeprefix("ipc://")).parent
        assert workdir.is_dir() and workdir.name.startswith("msgbench-zmq-")
        pids = [p.pid for p in ep.processes]
        assert [p.role for p in ep.processes] == (["zmq-proxy"] if mode == "proxy" else [])
        if mode == "proxy":
            assert all(Path(a.removeprefix("ipc://")).exists() for a in addrs)
    assert not workdir.exists()
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


def test_topic_prefixes_are_unambiguous() -> None:
    names = [f"t{i}" for i in range(120)]
    prefixes = [topic_prefix(n) for n in names]
    for a, pa in zip(names, prefixes, strict=True):
        for b, pb in zip(names, prefixes, strict=True):
            assert (pb.startswith(pa)) == (a == b), (a, b)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"zmq_mode": "star"}, "--zmq-mode"),
        ({"zmq_transport": "udp"}, "--zmq-transport"),
        ({"hwm": -1}, "--hwm"),
        ({"zmq_sockbuf": -1}, "--zmq-sockbuf"),
        ({"zmq_proxy": "tcp://127.0.0.1:1,tcp://127.0.0.1:2"}, "needs --zmq-mode proxy"),
        ({"zmq_mode": "proxy", "zmq_proxy": "localhost:1"}, "XSUB,XPUB"),
    ],
)
def test_settings_reject_bad_values(options: dict[str, Any], message: str) -> None:
    with pytest.raises(TargetError, match=message):
        Settings.parse(options)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--zmq-mode", "star"], "--zmq-mode"),
        (["--zmq-transport", "udp"], "--zmq-transport"),
        (["--hwm", "-5"], "--hwm"),
        (["--zmq-proxy", "tcp://127.0.0.1:1,tcp://127.0.0.1:2"], "--zmq-proxy"),
    ],
)
def test_bad_input_exits_2(run_cli: Any, args: list[str], message: str) -> None:
    r = run_cli("run", "--target", "zmq", *args)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not r.result_files()


# -- faults -------------------------------------------------------------------------------


def _start_long_run(out: Path, *extra: str) -> subprocess.Popen[str]:
    argv = msgbench_argv("run", "--target", "zmq", "--subs", "2", "--duration", "30s",
                         "--warmup", "0s", "--rate", "1000", "--out", str(out), "--json", *extra)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_measuring(proc: subprocess.Popen[str]) -> list[psutil.Process]:
    """Wait until the run is measuring; return every process it started."""
    assert proc.stderr is not None
    deadline = time.monotonic() + FAULT_DEADLINE_S
    for line in proc.stderr:
        if "measuring" in line:
            break
        assert time.monotonic() < deadline, "run never started measuring"
    time.sleep(0.5)
    return psutil.Process(proc.pid).children(recursive=True)


def _finish(proc: subprocess.Popen[str], since: float) -> tuple[dict[str, Any], float]:
    out, _ = proc.communicate(timeout=FAULT_DEADLINE_S)
    return json.loads(out), time.monotonic() - since


def _assert_gone(children: list[psutil.Process]) -> None:
    time.sleep(0.2)
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"left behind: {alive}"


def test_killed_forwarder_ends_the_run(tmp_path: Path) -> None:
    proc = _start_long_run(tmp_path, "--zmq-mode", "proxy")
    children = _wait_measuring(proc)
    proxies = [c for c in children if "msgbench.targets.zmq.proxy" in " ".join(c.cmdline())]
    assert len(proxies) == 1
    killed_at = time.monotonic()
    os.kill(proxies[0].pid, signal.SIGKILL)
    doc, elapsed = _finish(proc, killed_at)
    assert proc.returncode == 1
    assert elapsed < ENDS_WITHIN_S, f"took {elapsed:.1f} s to notice the dead forwarder"
    assert doc["status"] == "failed" and doc["partial"] is True
    # the forwarder's death and the worker's lost link race to be first: either names it
    assert any("forwarder" in r or "zmq-proxy" in r for r in doc["reasons"][:2]), doc["reasons"]
    assert doc["summary"]["delivered"] > 0, "what was measured before is kept"
    _assert_gone(children)


def test_killed_mesh_publisher_ends_the_run(tmp_path: Path) -> None:
    proc = _start_long_run(tmp_path)
    children = _wait_measuring(proc)
    workers = sorted((c for c in children if "spawn_main" in " ".join(c.cmdline())),
                     key=lambda c: c.pid)
    killed_at = time.monotonic()
    os.kill(workers[0].pid, signal.SIGKILL)  # worker 0 holds the publisher
    doc, elapsed = _finish(proc, killed_at)
    assert proc.returncode == 1
    assert elapsed < ENDS_WITHIN_S, f"took {elapsed:.1f} s to notice the dead publisher"
    assert "worker 0" in doc["reasons"][0] and "exited" in doc["reasons"][0]
    assert doc["partial"] is True and doc["summary"]["delivered"] > 0
    _assert_gone(children)

"""End to end: ``msgbench run --target ws`` against real chat servers (and Redis / ZeroMQ)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from conftest import CliRun, msgbench_argv
from msgbench.api.target import TargetError
from msgbench.kit.redis_server import check_installed
from msgbench.targets.ws.client import server_for_pub, server_for_sub
from msgbench.targets.ws.target import WsTarget

SHORT = ["--duration", "500ms", "--warmup", "100ms"]
FAULT_DEADLINE_S = 12.0
needs_redis = pytest.mark.skipif(check_installed() is not None,
                                 reason="redis-server is not installed")


def _doc(r: CliRun) -> dict[str, Any]:
    assert r.returncode in (0, 1), r.stderr
    data: dict[str, Any] = json.loads(r.stdout)
    return data


def test_placement_maps_clients_to_servers() -> None:
    assert [server_for_pub(i, 1, "spread") for i in range(3)] == [0, 0, 0]
    assert [server_for_sub(j, 1, "spread") for j in range(3)] == [0, 0, 0]
    assert [server_for_pub(i, 2, "spread") for i in range(4)] == [0, 1, 0, 1]
    assert [server_for_sub(j, 2, "spread") for j in range(4)] == [1, 0, 1, 0]
    assert [server_for_pub(i, 3, "cross") for i in range(3)] == [0, 0, 0]
    assert [server_for_sub(j, 3, "cross") for j in range(4)] == [1, 2, 1, 2]


def test_single_server_broadcast_delivers_everything(run_cli: Any) -> None:
    r = run_cli("run", "--target", "ws", "--pubs", "2", "--subs", "3", "--rate", "1000",
                *SHORT, "--json", "--quiet")
    doc = _doc(r)
    s = doc["summary"]
    assert doc["status"] == "ok", doc["reasons"]
    assert s["published"] == 2 * 500
    assert s["expected"] == s["delivered"] == 3 * 1000
    assert s["lost"] == s["duplicated"] == s["reordered"] == 0
    roles = {p["role"] for p in doc["processes"]}
    assert "chat-server 0" in roles
    server = next(p for p in doc["processes"] if p["role"] == "chat-server 0")
    assert server["cpu_s"] > 0 and server["peak_rss_bytes"] > 0
    info = doc["target"]
    assert info["servers"] == 1 and info["bridge"] == "none"
    (stats,) = info["server_stats"]
    # every measured message was relayed once to each of the 3 subscribers (plus probes
    # and warm-up, which the server cannot tell apart)
    assert stats["messages_out"] >= 3 * stats["messages_in"] >= 3 * 1000
    assert stats["slow_disconnects"] == 0 and stats["connected"] == 0


@pytest.mark.parametrize(
    ("bridge", "placement"), [pytest.param("redis", "spread", marks=needs_redis), ("zmq", "cross")]
)
def test_bridged_servers_deliver_across(run_cli: Any, bridge: str, placement: str) -> None:
    r = run_cli("run", "--target", "ws", "--servers", "2", "--bridge", bridge, "--ws-placement",
                placement, "--pubs", "2", "--subs", "4", "--topics", "2", "--rate", "1000",
                *SHORT, "--json", "--quiet")
    doc = _doc(r)
    s = doc["summary"]
    assert doc["status"] == "ok", doc["reasons"]
    # each publisher alternates 2 topics; each topic has 2 subscribers
    assert s["published"] == 2 * 500
    assert s["expected"] == s["delivered"] == 2 * 500 * 2
    roles = {p["role"] for p in doc["processes"]}
    assert {"chat-server 0", "chat-server 1"} <= roles
    assert ("redis-server" in roles) == (bridge == "redis")
    s0, s1 = doc["target"]["server_stats"]
    if placement == "spread":
        # both servers have publishers and subscribers: each hears the other through Redis
        assert s0["bridge_in"] > 0 and s1["bridge_in"] > 0
    else:
        # all publishers on server 0, all subscribers on 1: everything crossed the mesh
        assert s0["messages_out"] == 0 and s1["messages_in"] == 0
        assert s1["bridge_in"] == s0["bridge_out"] > 1000


def test_bad_options_are_one_line(run_cli: Any) -> None:
    r = run_cli("run", "--target", "ws", "--servers", "2", *SHORT, "--quiet")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines == ["msgbench: error: --servers 2 needs --bridge redis or zmq: unbridged chat "
                     "servers do not share messages"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"servers": 0}, "--servers must be at least 1"),
        ({"servers": 200, "bridge": "zmq"}, "--servers must be at most 32"),
        ({"ws_placement": "cross"}, "--ws-placement cross needs --servers 2"),
        ({"redis_url": "redis://127.0.0.1:1"}, "--redis-url applies to --bridge redis"),
        ({"max_client_buffer": 0}, "--max-client-buffer must be at least 1"),
        ({"max_client_buffer": 2**40}, "--max-client-buffer must be at most"),
    ],
)
def test_validate_rejects(options: dict[str, Any], message: str) -> None:
    with pytest.raises(TargetError) as err:
        WsTarget().validate(options)
    assert message in str(err.value)


def test_unreachable_redis_url_is_one_line(run_cli: Any) -> None:
    r = run_cli("run", "--target", "ws", "--bridge", "redis", "--redis-url",
                "redis://127.0.0.1:1", *SHORT, "--quiet")
    assert r.returncode == 2
    assert "cannot reach Redis" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_slow_subscriber_is_disconnected_and_reported(run_cli: Any) -> None:
    # 16 MB/s towards a subscriber that takes 1 ms a message: socket buffers fill within
    # half a second, then the server's own buffer passes the bound
    r = run_cli("run", "--target", "ws", "--size", "4096", "--rate", "4000", "--sub-delay",
                "1ms", "--max-client-buffer", "65536", "--duration", "1500ms", "--warmup",
                "100ms", "--drain-timeout", "2s", "--json", "--quiet")
    doc = _doc(r)
    assert doc["status"] == "degraded", doc["reasons"]
    assert any("disconnected" in reason for reason in doc["reasons"]), doc["reasons"]
    assert doc["target"]["server_stats"][0]["slow_disconnects"] >= 1


def _chat_servers(run: psutil.Process) -> list[psutil.Process]:
    found = []
    for child in run.children(recursive=True):
        try:
            if "serve_cmd" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


@needs_redis
def test_killed_chat_server_ends_the_run_with_a_partial_result(tmp_path: Path) -> None:
    out = tmp_path / "results"
    argv = msgbench_argv("run", "--target", "ws", "--servers", "2", "--bridge", "redis",
                         "--pubs", "2", "--subs", "2", "--rate", "500", "--duration", "30s",
                         "--warmup", "100ms", "--json", "--out", str(out))
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # progress: wait until the measurement runs
            if line.startswith("measuring"):
                break
        run = psutil.Process(proc.pid)
        servers = _chat_servers(run)
        assert len(servers) == 2, "chat servers not found"
        family = run.children(recursive=True)
        victim = next(p for p in servers if "s0" in p.cmdline())
        victim.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        stdout, stderr = proc.communicate(timeout=FAULT_DEADLINE_S + 10)
        assert time.monotonic() - killed_at < FAULT_DEADLINE_S
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, stderr
    doc = json.loads(stdout)
    assert doc["status"] == "failed" and doc["partial"]
    assert any("chat server 0" in reason for reason in doc["reasons"]), doc["reasons"]
    time.sleep(0.5)
    alive = [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"left behind: {[p.cmdline() for p in alive]}"

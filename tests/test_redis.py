"""The ``redis`` pub/sub target: real redis-server processes on free loopback ports."""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections.abc import Iterator, Sequence
from typing import Any, cast

import hiredis
import pytest
import redis

from conftest import CliRun
from msgbench.api.target import Sink, TargetError
from msgbench.kit.procs import which
from msgbench.kit.redis_cluster import parse_url
from msgbench.kit.redis_server import RedisServer, private_server
from msgbench.kit.resp import (
    RespConnection,
    command,
    command_head,
    pipeline,
    pipeline_block,
)
from msgbench.kit.resp_pubsub import PubSubConnection
from msgbench.targets.redis.pubsub import buffer_limit

pytestmark = pytest.mark.skipif(not which("redis-server"), reason="redis-server not installed")

SHORT = ["--duration", "500ms", "--warmup", "100ms", "--quiet"]
FAULT_DEADLINE_S = 20.0


def _ok_exact(r: CliRun) -> dict[str, Any]:
    assert r.returncode == 0, r.stderr
    doc = r.result()
    s = doc["summary"]
    assert doc["status"] == "ok", doc["reasons"]
    assert s["delivered"] == s["expected"] > 0
    assert s["lost"] == s["duplicated"] == s["reordered"] == s["misrouted"] == 0
    return doc


# -- pieces -------------------------------------------------------------------
def test_url_parsing() -> None:
    a = parse_url("rediss://user:p%40ss@example.org:7000/3?ssl_cert_reqs=none")
    assert (a.host, a.port, a.db, a.username, a.password, a.tls, a.verify_tls) == (
        "example.org", 7000, 3, "user", "p@ss", True, False)
    assert "p@ss" not in a.display() and "***@" in a.display()
    b = parse_url("redis://127.0.0.1")
    assert (b.port, b.db, b.password, b.tls) == (6379, 0, None, False)
    for bad in ("http://x:1", "redis://:1", "redis://h:1/db"):
        with pytest.raises(ValueError):
            parse_url(bad)


def test_buffer_limit_forms() -> None:
    assert buffer_limit("1mb 512kb 0") == "pubsub 1mb 512kb 0"
    assert buffer_limit("65536") == "pubsub 65536 0 0"
    for bad in ("1mb 2", "lots", "1mb 1mb 1mb"):
        with pytest.raises(TargetError):
            buffer_limit(bad)


def test_pipeline_encodes_what_hiredis_reads_back() -> None:
    head = command_head("PUBLISH", "t0")
    payloads = [b"a", b"", bytes(70), b"\r\n$3\r\n"]
    reader = hiredis.Reader()
    reader.feed(pipeline(head, payloads) + pipeline(head, [b"xy", b"zw"]))
    got = [reader.gets() for _ in range(6)]
    assert got == [[b"PUBLISH", b"t0", p] for p in [*payloads, b"xy", b"zw"]]
    assert reader.gets() is False


def test_pipeline_block_is_pipeline_of_the_cut_payloads() -> None:
    head = command_head("SPUBLISH", "topic-7")
    payloads = [bytes([i]) * 40 for i in range(5)] + [(b"\r\n$3\r\n" * 7)[:40]]
    block = b"".join(payloads)
    assert pipeline_block(head, block, len(payloads), 40) == pipeline(head, payloads)


def test_subscriber_parser_matches_hiredis_at_any_split() -> None:
    """The position-based fast path yields exactly the payloads, whatever the read sizes."""
    rng = random.Random(7)
    parts, expected = [], []
    for i in range(3000):
        channel = b"t0" if i % 5 else b"t12"
        size = 64 if rng.random() < 0.9 else rng.randint(0, 200)
        payload = rng.randbytes(size)
        kind = b"smessage" if i % 7 == 0 else b"message"
        parts.append(command(kind, channel, payload))
        expected.append(payload)
    stream = b"".join(parts)
    for _ in range(5):
        sink = _Collect()
        conn = PubSubConnection()
        conn.sink = sink
        pos = 0
        while pos < len(stream):
            step = rng.choice([1, 5, 97, 4096, 65536])
            conn.data_received(stream[pos : pos + step])
            pos += step
        assert sink.got == expected and conn.error is None
        assert sink.blocks > 0  # runs of same-shaped messages went over as blocks


class _Collect(Sink):
    """Collects payloads; counts the block hand-overs (cut out by the base class)."""

    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.blocks = 0

    def deliver(self, payloads: Sequence[bytes], offset: int = 0) -> None:
        self.got.extend(p[offset:] for p in payloads)

    def deliver_block(self, block: bytes, first: int, count: int, stride: int,
                      offset: int = 0, size: int | None = None) -> None:
        self.blocks += 1
        super().deliver_block(block, first, count, stride, offset, size)

    def disconnected(self, reason: str) -> None:
        raise AssertionError(reason)

    def note(self, reason: str) -> None:
        raise AssertionError(reason)


class _Wire:
    """Stands in for the socket: what a connection writes is only collected."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.sent.append(data)


def _counting(replies: int) -> RespConnection:
    conn = RespConnection()
    conn.transport = cast(asyncio.Transport, _Wire())
    conn.send_counted(b"", replies)
    return conn


def test_counted_replies_survive_any_split() -> None:
    """Integer and stream-id replies are counted (not parsed) across read boundaries."""
    for replies in ([b":%d\r\n" % i for i in range(500)],
                    [b"$15\r\n1700000000000-%d\r\n" % (i % 10) for i in range(500)]):
        conn = _counting(500)
        data = b"".join(replies)
        for i in range(0, len(data), 7):
            conn.data_received(data[i : i + 7])
        assert conn.outstanding == 0 and not conn.pending and conn.error is None
    bad = _counting(2)
    bad.data_received(b":1\r\n-ERR wrong\r\n")
    assert bad.outstanding == 0 and bad.error is not None and "wrong" in str(bad.error)


# -- end to end -----------------------------------------------------------------
def test_exact_counts_and_what_the_result_records(run_cli: Any) -> None:
    r = run_cli("run", "-t", "redis", "--pubs", "2", "--subs", "3", "--rate", "2000", *SHORT)
    doc = _ok_exact(r)
    assert doc["summary"]["published"] == 2 * 1000
    assert doc["summary"]["expected"] == 3 * 2000
    info = doc["target"]
    assert info["name"] == "redis" and info["client"] == "fast" and info["managed"] is True
    assert info["version"].startswith(("6.", "7.", "8."))
    assert "pubsub" in info["settings"]["client-output-buffer-limit"]
    assert "io-threads" in info["settings"]
    server = [p for p in doc["processes"] if p["role"] == "redis-server"]
    assert len(server) == 1 and server[0]["peak_rss_bytes"] > 0


@pytest.mark.parametrize("client", ["fast", "redis-py"])
def test_topics_reach_only_their_subscribers(run_cli: Any, client: str) -> None:
    r = run_cli("run", "-t", "redis", "--pubs", "1", "--subs", "4", "--topics", "2",
                "--rate", "2000", "--redis-client", client, *SHORT)
    doc = _ok_exact(r)
    assert doc["target"]["client"] == client
    # one publisher alternates topics: 500 messages each, every subscriber gets its topic's
    assert {d["sub"]: d["delivered"] for d in doc["subscribers"]} == {i: 500 for i in range(4)}


def test_slow_subscriber_is_disconnected_and_counted(run_cli: Any) -> None:
    r = run_cli("run", "-t", "redis", "--subs", "1", "--rate", "20k", "--size", "2048",
                "--sub-delay", "200us", "--redis-buffer-limit", "256kb 0 0",
                "--drain-timeout", "500ms", *SHORT, timeout=FAULT_DEADLINE_S * 3)
    assert r.returncode == 0, r.stderr
    doc = r.result()
    assert doc["status"] == "degraded"
    assert doc["summary"]["lost"] > 0 and doc["summary"]["disconnected_subscribers"] == 1
    assert any("disconnected" in x and "output-buffer-limit" in x for x in doc["reasons"])
    assert doc["target"]["pubsub_buffer_limit"] == "pubsub 256kb 0 0"


def test_sharded_pubsub_on_a_private_three_node_cluster(run_cli: Any) -> None:
    r = run_cli("run", "-t", "redis", "--redis-sharded", "--pubs", "2", "--subs", "3",
                "--topics", "3", "--rate", "2000", *SHORT)
    doc = _ok_exact(r)
    info = doc["target"]
    assert info["sharded"] is True and info["nodes"] == 3
    assert len(set(info["topic_nodes"].values())) >= 2, "topics should spread over shards"
    servers = [p for p in doc["processes"] if p["role"].startswith("redis-server")]
    assert len(servers) == 3


# -- bad input and faults ------------------------------------------------------
def _one_error_line(r: CliRun) -> str:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert not r.result_files()
    return lines[0]


@pytest.mark.parametrize(("args", "message"), [
    (["--redis-url", "redis://127.0.0.1:6379/nope"], "database number"),
    (["--redis-buffer-limit", "1mb 2"], "--redis-buffer-limit"),
    (["--redis-url", "redis://127.0.0.1:1", "--redis-buffer-limit", "1mb"], "private"),
])
def test_bad_redis_options(run_cli: Any, args: list[str], message: str) -> None:
    assert message in _one_error_line(run_cli("run", "-t", "redis", *args, *SHORT))


@pytest.fixture
def protected() -> Iterator[RedisServer]:
    """A private redis-server that requires the password ``secret``."""
    with private_server() as server:
        client = redis.Redis.from_url(server.url)
        client.config_set("requirepass", "secret")
        client.close()
        yield server


def test_user_server_with_and_without_a_password(run_cli: Any,
                                                        protected: RedisServer) -> None:
    # a wrong password: tests/test_fault_contract.py, for every Redis target
    hostport = protected.url.split("//", 1)[1].split("/", 1)[0]
    missing = run_cli("run", "-t", "redis", "--redis-url", f"redis://{hostport}", *SHORT)
    assert "needs a password" in _one_error_line(missing)
    good = run_cli("run", "-t", "redis", "--redis-url", f"redis://:secret@{hostport}/0",
                   "--rate", "1000", *SHORT)
    doc = _ok_exact(good)
    assert doc["target"]["managed"] is False and doc["target"]["measured"] is False
    assert "secret" not in json.dumps(doc["target"])
    assert not [p for p in doc["processes"] if p["role"].startswith("redis-server")]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


@pytest.fixture(params=[b"HTTP/1.1 400 Bad Request\r\n\r\n", b"SSH-2.0-OpenSSH_9.2\r\n"],
                ids=["http", "ssh"])
def not_redis(request: pytest.FixtureRequest) -> Iterator[int]:
    """A loopback service that answers every connection with ``request.param`` (not RESP)."""
    import socket
    import threading

    banner: bytes = request.param
    srv = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(banner)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        srv.close()


@pytest.mark.parametrize("target", [["redis"], ["redis-streams"], ["ws", "--bridge", "redis"]])
def test_a_service_that_is_not_redis_is_one_line(run_cli: Any, not_redis: int,
                                                 target: list[str]) -> None:
    r = run_cli("run", "-t", *target, "--redis-url", f"redis://127.0.0.1:{not_redis}", *SHORT)
    assert "does not speak Redis" in _one_error_line(r)


def test_calls_nobody_awaits_end_quietly_when_the_connection_goes() -> None:
    """Ctrl-C while a redis-streams reader waits: its pending calls fail without
    "Future exception was never retrieved"."""
    import gc

    from msgbench.kit.redis_cluster import connect

    async def scenario(url: str) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: seen.append(ctx))
        conn = await connect(parse_url(url), RespConnection)
        waiting = conn.send_call(command("BLPOP", "msgbench:nothing", 0))
        queued = conn.send_call(command("PING"))
        assert conn.transport is not None
        conn.transport.abort()
        await asyncio.sleep(0.05)
        assert waiting.done() and queued.done()
        del waiting, queued
        gc.collect()
        await asyncio.sleep(0)
        return seen

    with private_server() as server:
        seen = asyncio.run(scenario(server.url))
    assert not seen, [ctx.get("message") for ctx in seen]

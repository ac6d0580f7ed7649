"""The ``rabbitmq`` target: a real private RabbitMQ node, started once for the module.

Most runs use that node through ``--amqp-url`` (a node takes 5-10 s to start); the
private-broker path itself (start, measure, stop, nothing left behind) has its own run;
a killed or stopped broker, a wrong password and no broker: tests/test_fault_contract.py.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import random
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import psutil
import pytest
from pamqp import commands, frame, header
from pamqp.body import ContentBody

from conftest import CliRun, msgbench_argv
from msgbench.api.target import TargetError
from msgbench.kit.amqp_server import PrivateBroker, check_installed
from msgbench.targets.rabbitmq.client import FastPublisher
from msgbench.targets.rabbitmq.frames import (
    DeliverySink,
    Shape,
    parse,
    publish_block,
    publish_head,
    publish_one,
)
from msgbench.targets.rabbitmq.layout import Layout, QueueSpec
from msgbench.targets.rabbitmq.target import URL_ENV, parse_ack
from msgbench.targets.rabbitmq.wire import AmqpConnection, AmqpError, connect, parse_url

needs_broker = pytest.mark.skipif(check_installed() is not None,
                                  reason="rabbitmq-server not installed")
SHORT = ["--duration", "500ms", "--warmup", "100ms", "--quiet"]
FAULT_DEADLINE_S = 60.0
"""A private node's start (5-10 s on a busy machine) plus the run up to measuring."""
GONE_WITHIN_S = 3.0


# -- pieces -------------------------------------------------------------------
def test_url_forms() -> None:
    u = parse_url("amqps://us%40er:p%2Fss@example.org:7000/my%2Fvhost")
    assert (u.host, u.port, u.user, u.password, u.vhost, u.tls) == (
        "example.org", 7000, "us@er", "p/ss", "my/vhost", True)
    assert "p/ss" not in u.display() and "***" in u.display()
    d = parse_url("amqp://h")
    assert (d.port, d.user, d.password, d.vhost) == (5672, "guest", "guest", "/")
    assert parse_url("amqp://h/%2F").vhost == "/"
    for bad in ("http://h", "amqp://:5672", "amqp://h:99999", "amqp://h/a/b"):
        with pytest.raises(ValueError):
            parse_url(bad)


def test_ack_modes() -> None:
    assert parse_ack("auto", 10) == ("auto", 2)
    assert parse_ack("each", 10)[0] == "each"
    assert parse_ack("multi:8", 10) == ("multi", 8)
    assert parse_ack("multi", 1000) == ("multi", 250)
    assert parse_ack("multi:5000", 0) == ("multi", 5000)  # prefetch 0: no limit to stall at
    for bad in ("multi:11", "multi:0", "some", "each:3"):
        with pytest.raises(TargetError):
            parse_ack(bad, 10)


def test_layout_names_and_flags() -> None:
    fan = Layout("r1", ("t0", "t1"))
    assert fan.exchanges() == ["msgbench.r1.t0", "msgbench.r1.t1"]
    assert fan.routing_key("t0") == "" and fan.sub_queue(3) == ""
    assert fan.subscriber_queue(3) == QueueSpec("", False, True, True, {})
    top = Layout("r1", ("t0", "t1"), "topic", durable=True, quorum=True, max_length=9)
    assert top.exchanges() == ["msgbench.r1"] and top.routing_key("t1") == "t1"
    assert top.sub_queue(3) == "msgbench.r1.sub.3"
    args = {"x-queue-type": "quorum", "x-max-length": 9}
    assert top.subscriber_queue(3) == QueueSpec("msgbench.r1.sub.3", True, False, False, args)
    assert top.shared_queue("g") == QueueSpec("msgbench.r1.group.g", True, False, False, args)
    assert fan.shared_queue("g").exclusive is False
    assert Layout.from_json(json.loads(json.dumps(top.to_json()))) == top


def test_confirm_window_counts_multiple_and_out_of_order_confirms() -> None:
    pub = FastPublisher(cast(AmqpConnection, None), Layout("r", ("t0",), confirm_window=8))
    pub.sent = 10
    pub._on_confirm(3, True, False)  # 1-3
    pub._on_confirm(6, False, False)  # 6 alone: 4 and 5 still open
    pub._on_confirm(5, False, False)
    assert (pub.settled, pub.singles, pub.unconfirmed) == (3, {5, 6}, 5)
    pub._on_confirm(4, False, False)  # contiguous now: 1-6
    assert (pub.settled, pub.singles, pub.unconfirmed) == (6, set(), 4)
    pub._on_confirm(10, True, True)  # a nack settles too, and is counted
    assert (pub.unconfirmed, pub.nacked) == (0, 1)


def test_publish_block_is_the_publishes_joined() -> None:
    props = commands.Basic.Properties(delivery_mode=2)
    bodies = [bytes([i]) * 40 for i in range(7)]
    head = publish_head(1, "ex", "rk", 40, props)
    want = b"".join(publish_one(1, "ex", "rk", b, props, 131072) for b in bodies)
    assert publish_block(head, b"".join(bodies), 7, 40) == want
    # what pamqp reads back: method, header, body per message
    pos, kinds = 0, []
    while pos < len(want):
        used, _, value = frame.unmarshal(want[pos:])
        kinds.append(type(value).__name__)
        pos += used
    assert kinds == ["Publish", "ContentHeader", "ContentBody"] * 7


class _Collect(DeliverySink):
    def __init__(self) -> None:
        self.got: list[tuple[bytes, int]] = []
        self.methods: list[str] = []
        self.blocks = 0

    def block(self, buf: bytes, first: int, count: int, shape: Shape) -> None:
        self.blocks += count > 1
        for i in range(count):
            item = first + i * shape.stride
            tag = int.from_bytes(buf[item + shape.tag_at : item + shape.tag_at + 8], "big")
            self.got.append((buf[item + shape.body_at : item + shape.body_at
                                 + shape.body_size], tag))

    def one(self, body: bytes, tag: int, redelivered: bool = False) -> None:
        self.got.append((body, tag))

    def method(self, channel: int, value: Any) -> None:
        self.methods.append(value.name)


def _delivery(tag: int, body: bytes, frame_max: int, rk: str = "") -> bytes:
    parts = [frame.marshal(commands.Basic.Deliver("ctag", tag, False, "ex", rk), 1),
             frame.marshal(header.ContentHeader(0, len(body),
                                                commands.Basic.Properties(delivery_mode=1)), 1)]
    step = frame_max - 8
    for p in range(0, len(body), step):
        parts.append(frame.marshal(ContentBody(body[p : p + step]), 1))
    return b"".join(parts)


def test_deliveries_parse_the_same_at_any_split() -> None:
    """Runs go over as blocks; odd sizes, split bodies, other methods and any read size
    give exactly the bodies and tags pamqp would."""
    rng = random.Random(5)
    frame_max = 4096
    stream, want = [], []
    for tag in range(1, 3001):
        if tag % 500 == 0:
            stream.append(frame.marshal(commands.Basic.Ack(tag, True), 1))
        size = 64 if rng.random() < 0.9 else rng.choice([33, 200, 9000])
        body = rng.randbytes(size)
        stream.append(_delivery(tag, body, frame_max, rk="k" if size == 33 else ""))
        want.append((body, tag))
    data = b"".join(stream)
    for _ in range(4):
        sink, buf, pos = _Collect(), b"", 0
        while pos < len(data):
            step = rng.choice([1, 7, 100, 4096, 65536])
            buf += data[pos : pos + step]
            pos += step
            buf = buf[parse(buf, sink, frame_max):]
        assert buf == b"" and sink.got == want
        assert sink.methods == ["Basic.Ack"] * 6 and sink.blocks > 0


# -- a private broker for the module -------------------------------------------
@pytest.fixture(scope="module")
def broker(rabbit_broker: PrivateBroker) -> PrivateBroker:
    """The session's private RabbitMQ node (see conftest), for this module's runs."""
    return rabbit_broker


def _ok_exact(r: CliRun) -> dict[str, Any]:
    assert r.returncode == 0, r.stderr
    doc = r.result()
    s = doc["summary"]
    assert doc["status"] == "ok", doc["reasons"]
    assert s["delivered"] == s["expected"] > 0
    assert s["lost"] == s["duplicated"] == s["reordered"] == s["misrouted"] == 0
    return doc


def _run(run_cli: Any, broker: PrivateBroker, *args: str, timeout: float = 120,
         url: str | None = None) -> CliRun:
    """``msgbench run -t rabbitmq`` on ``broker``, its URL (holding the password) passed in
    the environment as a user should, not on the command line."""
    saved = os.environ.get(URL_ENV)
    os.environ[URL_ENV] = url or broker.url
    try:
        r: CliRun = run_cli("run", "-t", "rabbitmq", *args, timeout=timeout)
    finally:
        if saved is None:
            del os.environ[URL_ENV]
        else:
            os.environ[URL_ENV] = saved
    assert broker.password not in r.stderr + r.stdout
    return r


@pytest.mark.parametrize("client", ["fast", "aio-pika"])
def test_exact_counts_on_a_users_broker(run_cli: Any, broker: PrivateBroker,
                                        client: str) -> None:
    doc = _ok_exact(_run(run_cli, broker, "--pubs", "2", "--subs", "3", "--rate", "2000",
                         "--amqp-client", client, *SHORT))
    assert doc["summary"]["published"] == 2000 and doc["summary"]["expected"] == 6000
    info = doc["target"]
    assert info["client"] == client and info["version"].startswith("3.")
    assert info["managed"] is False and info["measured"] is False
    assert broker.password not in json.dumps(doc)
    assert info["cleanup"].startswith("deleted")


@pytest.mark.parametrize("exchange", ["fanout", "topic"])
def test_topics_reach_only_their_subscribers(run_cli: Any, broker: PrivateBroker,
                                             exchange: str) -> None:
    doc = _ok_exact(_run(run_cli, broker, "--subs", "4", "--topics", "2", "--rate", "2000",
                         "--amqp-exchange", exchange, *SHORT))
    # one publisher alternates topics: 500 messages each, every subscriber gets its topic's
    assert {d["sub"]: d["delivered"] for d in doc["subscribers"]} == {i: 500 for i in range(4)}
    assert doc["target"]["exchange"] == exchange


@pytest.mark.parametrize(("flags", "recorded"), [
    (["--persistent", "--confirm-window", "16", "--amqp-ack", "each"],
     (16, True, "durable", "each")),
    (["--quorum", "--confirm-window", "64"], (64, False, "quorum", "multi:250")),
])
def test_confirms_persistence_and_quorum_queues(run_cli: Any, broker: PrivateBroker,
                                                flags: list[str],
                                                recorded: tuple[Any, ...]) -> None:
    doc = _ok_exact(_run(run_cli, broker, "--subs", "2", "--rate", "2000", "--durable",
                         *flags, *SHORT))
    info = doc["target"]
    assert (info["confirm_window"], info["persistent"], info["queues"], info["ack"]) == recorded


def _queue_exists(broker: PrivateBroker, name: str) -> bool:
    async def probe() -> bool:
        conn = await connect(parse_url(broker.url))
        try:
            await conn.call(commands.Queue.Declare(queue=name, passive=True),
                            commands.Queue.DeclareOk)
        except AmqpError as exc:
            assert "NOT_FOUND" in str(exc), exc
            return False
        finally:
            conn.close()
        return True

    return asyncio.run(probe())


def test_durable_subscribers_lose_nothing_under_churn(run_cli: Any,
                                                       broker: PrivateBroker) -> None:
    doc = _ok_exact(_run(run_cli, broker, "--subs", "2", "--rate", "2000", "--durable",
                         "--churn", "200ms/600ms", "--duration", "1500ms", "--warmup", "100ms",
                         "--quiet"))
    s = doc["summary"]
    assert s["delivered"] == s["expected"] == 2 * 3000
    assert s["lost_during_churn"] == 0
    # the run's durable queues are gone from the user's broker again
    assert not _queue_exists(broker, f"msgbench.{doc['target']['run_id']}.sub.0")


def test_transient_subscribers_lose_what_was_published_while_away(
        run_cli: Any, broker: PrivateBroker) -> None:
    r = _run(run_cli, broker, "--subs", "2", "--rate", "2000", "--churn", "200ms/600ms",
             "--duration", "1500ms", "--warmup", "100ms", "--quiet")
    assert r.returncode == 0, r.stderr
    doc = r.result()
    s = doc["summary"]
    assert doc["status"] == "degraded"
    # each subscriber is away twice for 200 ms at 2000/s: at least 4 x 400 missed, all of
    # them while away, none while connected
    assert s["lost"] == s["lost_during_churn"] >= 4 * 400 - 40
    assert s["delivered"] + s["lost"] == s["expected"] == 2 * 3000
    assert s["duplicated"] == 0


def test_a_bounded_queue_drops_for_a_slow_subscriber(run_cli: Any,
                                                      broker: PrivateBroker) -> None:
    r = _run(run_cli, broker, "--subs", "1", "--rate", "10000", "--sub-delay", "300us",
             "--amqp-max-length", "200", "--drain-timeout", "500ms", *SHORT)
    assert r.returncode == 0, r.stderr
    doc = r.result()
    assert doc["status"] == "degraded" and doc["summary"]["lost"] > 0
    assert doc["target"]["max_length"] == 200


# -- bad input ------------------------------------------------------------------
def _one_error_line(r: CliRun) -> str:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert not r.result_files()
    return lines[0]


def test_a_vhost_it_may_not_use_is_one_line(run_cli: Any, broker: PrivateBroker) -> None:
    # a wrong password: tests/test_fault_contract.py
    vhost = broker.url.rsplit("/", 1)[0] + "/nosuch"
    line = _one_error_line(_run(run_cli, broker, *SHORT, url=vhost))
    assert "nosuch" in line and broker.password not in line


@pytest.mark.parametrize(("args", "message"), [
    (["--amqp-url", "http://x/"], "invalid --amqp-url"),
    (["--quorum"], "--durable"),
    (["--amqp-ack", "multi:5000"], "--amqp-prefetch"),
    (["--confirm-window", "-1"], "--confirm-window"),
])
def test_bad_options(run_cli: Any, args: Sequence[str], message: str) -> None:
    assert message in _one_error_line(run_cli("run", "-t", "rabbitmq", *args, *SHORT))


# -- the private broker ---------------------------------------------------------
def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _none_left(children: list[psutil.Process]) -> None:
    """Every process of the run is gone within :data:`GONE_WITHIN_S` (multiprocessing's
    resource tracker takes a moment after msgbench itself)."""
    deadline = time.monotonic() + GONE_WITHIN_S
    while True:
        alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return
        assert time.monotonic() < deadline, f"left behind: {alive}"
        time.sleep(0.1)


def _measuring(proc: subprocess.Popen[str]) -> list[psutil.Process]:
    assert proc.stderr is not None
    deadline = time.monotonic() + FAULT_DEADLINE_S
    for line in proc.stderr:
        if "measuring" in line:
            break
        assert time.monotonic() < deadline, "run never started measuring"
    return _children(proc.pid)


@needs_broker
def test_private_broker_is_measured_and_leaves_nothing(tmp_path: Path) -> None:
    argv = msgbench_argv("run", "-t", "rabbitmq", "--pubs", "2", "--subs", "2", "--rate",
                         "2000", "--duration", "1s", "--warmup", "100ms", "--out",
                         str(tmp_path), "--json")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    children = _measuring(proc)
    names = {c.name() for c in children}
    assert "beam.smp" in names and "epmd" in names
    listening = {c.laddr.ip for p in children if p.name() in ("beam.smp", "epmd")
                 for c in p.net_connections("inet") if c.status == psutil.CONN_LISTEN}
    # epmd adds ::1 to the address it is given: loopback too
    assert "127.0.0.1" in listening and all(ipaddress.ip_address(a).is_loopback
                                            for a in listening), listening
    out, _ = proc.communicate(timeout=FAULT_DEADLINE_S)
    assert proc.returncode == 0
    doc = json.loads(out)
    assert doc["status"] == "ok", doc["reasons"]
    assert doc["summary"]["delivered"] == doc["summary"]["expected"] == 2 * 2 * 2000
    info = doc["target"]
    assert info["managed"] is True and info["startup_s"] > 0
    assert info["settings"]["scheduler_busy_wait"] == "+sbwt none +sbwtdcpu none +sbwtdio none"
    server = [p for p in doc["processes"] if p["role"] == "rabbitmq-server"]
    assert len(server) == 1 and server[0]["peak_rss_bytes"] > 0 and server[0]["cpu_s"] > 0
    _none_left(children)

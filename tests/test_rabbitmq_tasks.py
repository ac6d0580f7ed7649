"""``rabbitmq --pattern tasks`` against a real private RabbitMQ node (one for the module):
the ledger exact for every ack mode (and on aio-pika), nacks redelivered, a killed worker
(redelivered with acks, lost counted exactly without), the queue depth a passive declare
sees."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from pamqp import commands, frame, header
from pamqp.body import ContentBody

from conftest import CliRun
from msgbench.api.target import Sink, TargetError
from msgbench.kit.amqp_server import PrivateBroker
from msgbench.targets.rabbitmq.client import FastPublisher, declare_exchanges
from msgbench.targets.rabbitmq.fast import FastClient
from msgbench.targets.rabbitmq.frames import DeliverySink, Shape, parse, tags_and_flags
from msgbench.targets.rabbitmq.layout import Layout
from msgbench.targets.rabbitmq.target import URL_ENV, layout_of
from msgbench.targets.rabbitmq.wire import connect, parse_url

SHAPE = ["--pattern", "tasks", "--pubs", "2", "--subs", "4", "--rate", "2k", "--json",
         "--quiet"]
SHORT = ["--duration", "1s", "--warmup", "300ms"]
# the kill needs the members in two worker processes; a millisecond of work per task keeps
# some in hand at the kill; the drain gives the survivors time for the requeued ones
KILL = ["--procs", "3", "--duration", "1500ms", "--warmup", "200ms", "--kill-worker", "500ms",
        "--work", "fixed:1ms"]
DEPTH_WAIT_S = 5.0


# -- pieces -------------------------------------------------------------------
class _Runs(DeliverySink):
    def __init__(self) -> None:
        self.got: list[tuple[int, bool]] = []

    def block(self, buf: bytes, first: int, count: int, shape: Shape) -> None:
        tags, again = tags_and_flags(buf, first, count, shape)
        self.got += zip(tags.tolist(), again.tolist(), strict=True)

    def one(self, body: bytes, tag: int, redelivered: bool = False) -> None:
        self.got.append((tag, redelivered))

    def method(self, channel: int, value: Any) -> None:
        raise AssertionError(value)


def test_tags_and_redelivered_flags_read_from_a_run() -> None:
    """A run of one shape may mix first and repeated deliveries: each flag is read."""
    rng = np.random.default_rng(3)
    want = [(t, bool(rng.random() < 0.3)) for t in range(1, 400)]
    props = commands.Basic.Properties(delivery_mode=1)
    data = b"".join(
        frame.marshal(commands.Basic.Deliver("msgbench.0", t, again, "ex", ""), 1)
        + frame.marshal(header.ContentHeader(0, 5, props), 1)
        + frame.marshal(ContentBody(b"abcde"), 1)
        for t, again in want)
    sink = _Runs()
    assert parse(data, sink, 131072) == len(data)
    assert sink.got == want


# -- a private broker for the module -------------------------------------------
@pytest.fixture(scope="module")
def broker(rabbit_broker: PrivateBroker) -> PrivateBroker:
    """The session's private RabbitMQ node (see conftest), for this module's runs."""
    return rabbit_broker


def _run(run_cli: Any, broker: PrivateBroker, monkeypatch: pytest.MonkeyPatch,
         *args: str) -> dict[str, Any]:
    monkeypatch.setenv(URL_ENV, broker.url)  # the password stays off the command line
    r: CliRun = run_cli("run", "-t", "rabbitmq", *SHAPE, *args)
    assert r.returncode == 0, r.stderr
    assert broker.password not in r.stdout + r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


@pytest.mark.parametrize(("ack", "nack_every"), [("auto", 0), ("each", 10), ("multi:50", 0)])
def test_ledger_exact_for_every_ack_mode(run_cli: Any, broker: PrivateBroker,
                                         monkeypatch: pytest.MonkeyPatch, ack: str,
                                         nack_every: int) -> None:
    """Every task done once; with nacks (``each``: every tenth fresh task nacked with
    requeue) they come back redelivered, and still nothing is lost or done twice."""
    doc = _run(run_cli, broker, monkeypatch, *SHORT, "--amqp-ack", ack, "--amqp-prefetch",
               "100", "--amqp-nack-every", str(nack_every))
    s = doc["summary"]
    assert doc["status"] == "ok", doc["reasons"]
    assert s["published"] == s["expected"] == s["delivered"] == 4000
    assert s["lost"] == s["duplicated"] == s["misrouted"] == 0
    if nack_every:  # warm-up and probe tasks are nacked too: at least a tenth of these
        assert s["redelivered"] >= 4000 // nack_every, s
    else:
        assert s["redelivered"] == 0
    g = doc["groups"]["g0"]
    assert sum(g["shares"]) == 4000 and len(g["shares"]) == 4 and min(g["shares"]) > 0
    info = doc["target"]
    assert (info["ack"], info["prefetch"], info["nack_every"]) == (ack, 100, nack_every)
    assert "transient" in info["group_queue"] and "queues" not in info
    depth = [(x["queue_waiting"], x["queue_unacked"]) for x in doc["series"]
             if "queue_waiting" in x]  # once the driver samples Client.queue_depth
    assert all(isinstance(w, int) and w >= 0 and u is None for w, u in depth), depth


def test_aio_pika_members_ack_and_nack_exactly(run_cli: Any, broker: PrivateBroker,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The aio-pika path: a message at a time, multiple acks, nacks redelivered once."""
    doc = _run(run_cli, broker, monkeypatch, "--duration", "500ms", "--warmup", "200ms",
               "--amqp-client", "aio-pika", "--amqp-ack", "multi:50", "--amqp-nack-every", "10")
    s = doc["summary"]
    assert doc["status"] == "ok", doc["reasons"]
    assert s["delivered"] == s["expected"] == 2000
    assert s["lost"] == s["duplicated"] == 0 and s["redelivered"] >= 2000 // 10, s
    assert doc["target"]["client"] == "aio-pika"


def test_a_killed_worker_with_acks_loses_nothing(
        run_cli: Any, broker: PrivateBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = _run(run_cli, broker, monkeypatch, *KILL, "--amqp-ack", "each", "--drain-timeout", "3s")
    s, g = doc["summary"], doc["groups"]["g0"]
    why = (s, g, doc["reasons"])
    assert any("killed on purpose" in r for r in doc["reasons"]), why
    assert s["lost"] == 0 and s["delivered"] == s["expected"] > 0, why
    # a task done and acked just before the kill can still be done again: its ack was in
    # the dead connection's last bytes (most likely the socket, deliveries unread, closes
    # with a reset and the broker drops what it had not read); each came back redelivered
    assert s["redelivered"] > 0 and s["duplicated"] <= s["redelivered"], why
    assert g["recovery_s"] is not None, why


def test_a_killed_worker_without_acks_loses_what_it_held_counted_exactly(
        run_cli: Any, broker: PrivateBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # what is lost never comes: the drain ends at its timeout, so keep that short
    doc = _run(run_cli, broker, monkeypatch, *KILL, "--amqp-ack", "auto", "--drain-timeout", "1s")
    s = doc["summary"]
    why = (s, doc["reasons"])
    assert s["lost"] > 0 and s["lost"] == s["expected"] - s["delivered"], why
    assert s["redelivered"] == s["duplicated"] == 0, why


@pytest.mark.parametrize(("options", "says"), [
    ({"amqp_nack_every": 1}, "--amqp-nack-every"),
    ({"amqp_nack_every": 3, "amqp_ack": "auto"}, "needs acks"),
    ({"amqp_reply": "mail"}, "--amqp-reply"),
])
def test_bad_settings_are_refused(options: dict[str, Any], says: str) -> None:
    with pytest.raises(TargetError, match=says):
        layout_of(options, ("t0",), "x")


# -- the queue depth ------------------------------------------------------------
class _Holding(Sink):
    """A member's sink that keeps what it is handed until released."""

    def __init__(self) -> None:
        self.held = 0
        self.release = asyncio.Event()

    def deliver(self, payloads: Sequence[bytes], offset: int = 0) -> None:
        raise AssertionError("a group member is handed tasks, not deliveries")

    async def handle(self, payloads: Sequence[bytes], redelivered: bool = False) -> None:
        self.held += len(payloads)
        await self.release.wait()

    def disconnected(self, reason: str) -> None:
        raise AssertionError(reason)

    def note(self, reason: str) -> None:
        raise AssertionError(reason)


async def _wait_waiting(client: FastClient, want: int) -> int | None:
    """Poll until the group's queue shows ``want`` waiting (publishes land a bit later)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + DEPTH_WAIT_S
    got = None
    while loop.time() < end:
        depth = await client.queue_depth("t0", "g0")
        got = depth.waiting if depth else None
        if got == want:
            break
        await asyncio.sleep(0.05)
    return got


def test_queue_depth_is_the_ready_count(broker: PrivateBroker) -> None:
    """Waiting = the tasks no member holds (a passive declare's count); unacked: None."""

    async def main() -> None:
        url = parse_url(broker.url)
        layout = Layout("depth", ("t0",), prefetch=10, ack="each")
        client = FastClient(url, layout)
        assert await client.queue_depth("t0", "g0") is None  # no such queue yet
        # declare the group's queue the way a member does, then fill it
        conn = await connect(url)
        await declare_exchanges(conn, layout)
        spec = layout.shared_queue("g0", "t0")
        await conn.call(commands.Queue.Declare(queue=spec.name, auto_delete=True),
                        commands.Queue.DeclareOk)
        await conn.call(commands.Queue.Bind(queue=spec.name, exchange=layout.exchange("t0")),
                        commands.Queue.BindOk)
        pub = await FastPublisher.open(url, layout)
        await pub.publish("t0", [bytes([1]) * 32] * 50)
        assert await _wait_waiting(client, 50) == 50
        sink = _Holding()
        member = await client.subscribe(0, ["t0"], sink, group="g0")
        assert await _wait_waiting(client, 40) == 40  # the prefetch took 10, unacked
        depth = await client.queue_depth("t0", "g0")
        assert depth is not None and depth.unacked is None
        sink.release.set()
        assert await _wait_waiting(client, 0) == 0
        await member.close()
        await pub.close()
        conn.close()
        await client.close()

    asyncio.run(main())

"""``rabbitmq --pattern rpc`` against a real private RabbitMQ node (one for the module):
replies matched exactly by direct reply-to and by reply queues (a killed responder:
tests/test_fault_contract.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pamqp import commands, frame, header
from pamqp.body import ContentBody

from msgbench.kit.amqp_server import PrivateBroker
from msgbench.targets.rabbitmq.frames import DeliverySink, Shape, parse, reply_to_at
from msgbench.targets.rabbitmq.target import URL_ENV

RUN = ["run", "-t", "rabbitmq", "--pattern", "rpc", "--json", "--quiet", "-w", "300ms"]


class _Addresses(DeliverySink):
    def __init__(self) -> None:
        self.got: list[bytes] = []

    def block(self, buf: bytes, first: int, count: int, shape: Shape) -> None:
        self.got += [reply_to_at(buf, first + i * shape.stride, shape) for i in range(count)]

    def one(self, body: bytes, tag: int, redelivered: bool = False) -> None:
        raise AssertionError("one-frame bodies only")

    def method(self, channel: int, value: Any) -> None:
        raise AssertionError(value)


@pytest.mark.parametrize("props", [
    {"reply_to": "amq.rabbitmq.reply-to.g1h2AA5yZXBseUAxNzk"},
    {"delivery_mode": 2, "reply_to": "amq.gen-abc"},
    {"content_type": "x/y", "headers": {"k": "v"}, "priority": 3, "correlation_id": "c9",
     "reply_to": "q", "message_id": "m"},
    {"delivery_mode": 1},
])
def test_reply_to_is_read_past_the_properties_before_it(props: dict[str, Any]) -> None:
    """Same-shaped deliveries whose properties differ: each address is its own."""
    data = b""
    for i in range(3):
        p = dict(props)
        if "reply_to" in p:
            p["reply_to"] = p["reply_to"][:-1] + str(i)  # same length, other address
        data += (frame.marshal(commands.Basic.Deliver("msgbench.0", i + 1, False, "", "q"), 1)
                 + frame.marshal(header.ContentHeader(0, 4, commands.Basic.Properties(**p)), 1)
                 + frame.marshal(ContentBody(b"body"), 1))
    sink = _Addresses()
    assert parse(data, sink, 131072) == len(data)
    want = [(props["reply_to"][:-1] + str(i)).encode() if "reply_to" in props else b""
            for i in range(3)]
    assert sink.got == want


@pytest.fixture(scope="module")
def broker(rabbit_broker: PrivateBroker) -> PrivateBroker:
    """The session's private RabbitMQ node (see conftest), for this module's runs."""
    return rabbit_broker


@pytest.mark.parametrize("reply", ["direct", "queue"])
def test_every_reply_comes_back_to_its_requester(run_cli: Any, broker: PrivateBroker,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 reply: str) -> None:
    monkeypatch.setenv(URL_ENV, broker.url)
    r = run_cli(*RUN, "--amqp-reply", reply, "--pubs", "3", "--subs", "2", "--rate", "1k",
                "-d", "1s")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    s = doc["summary"]
    assert doc["status"] == "ok", doc["reasons"]
    assert s["delivered"] == s["expected"] == s["published"] == 3000
    assert s["misrouted"] == s["orphan_replies"] == s["duplicated"] == s["timeouts"] == 0
    assert doc["target"]["reply"] == reply
    assert doc["legs"]["rpc_request_leg"]["count"] == s["delivered"]



def test_aio_pika_replies_come_back_too(run_cli: Any, broker: PrivateBroker,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """aio-pika's request/reply: a publish per request, a responder answering one at a
    time (slow: a low rate and a long timeout, since the count is what is checked)."""
    monkeypatch.setenv(URL_ENV, broker.url)
    r = run_cli(*RUN, "--amqp-client", "aio-pika", "--pubs", "2", "--subs", "2", "--rate",
                "100", "-d", "1s", "--timeout", "5s")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    s = doc["summary"]
    assert doc["status"] == "ok", doc["reasons"]
    assert s["delivered"] == s["expected"] == s["published"] == 200
    assert s["misrouted"] == s["orphan_replies"] == s["duplicated"] == s["timeouts"] == 0
    assert doc["target"]["client"] == "aio-pika"

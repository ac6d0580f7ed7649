"""``rabbitmq``: an AMQP 0-9-1 broker; broadcast through an exchange, a queue per subscriber;
tasks on a shared work queue per group; request/reply with direct reply-to or reply queues.

Without ``--amqp-url`` the run starts a private RabbitMQ node
(:mod:`msgbench.kit.amqp_server`) and measures its ``beam.smp`` as ``rabbitmq-server``;
its start-up time is recorded and lies before the measurement. With a URL it uses that
broker, never stops it, and deletes the run's exchanges and durable queues afterwards.

Where messages go is :mod:`~msgbench.targets.rabbitmq.layout`; the default client path
(:mod:`~msgbench.targets.rabbitmq.fast`) measures RabbitMQ, ``--amqp-client aio-pika``
(:mod:`~msgbench.targets.rabbitmq.pika`) what an aio-pika application sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import re
import secrets
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import asdict
from typing import Any, TypeVar

from pamqp import commands

from msgbench.api.faults import FaultPlan, Login, ServerFault, Unreachable
from msgbench.api.target import (
    JSON,
    Availability,
    Client,
    Endpoint,
    Pattern,
    ServerProcess,
    ServeSpec,
    Target,
    TargetError,
    TargetOption,
    secret_env_name,
)
from msgbench.kit.amqp_server import check_installed, private_broker, server_script
from msgbench.targets.rabbitmq.client import endpoint_url
from msgbench.targets.rabbitmq.fast import FastClient
from msgbench.targets.rabbitmq.layout import EXCHANGE_KINDS, REPLY_MODES, Layout
from msgbench.targets.rabbitmq.wire import (
    FRAME_MAX,
    AccessRefused,
    AmqpError,
    AmqpUrl,
    connect,
    parse_url,
)

CLIENTS = ("fast", "aio-pika")
DEFAULT_PREFETCH = 1000
DEFAULT_ACK = "multi:250"
_ACK_RE = re.compile(r"^(auto|each|multi(?::(\d+))?)$")
CLEANUP_TIMEOUT_S = 5.0
_T = TypeVar("_T")
CLEANUP_STEP_TIMEOUT_S = 1.0
"""One step of the clean-up of a user's broker (connect, one delete): a healthy broker
answers in milliseconds, and one that stopped must not hold the run's exit up for long."""
RPC_SIZE_MAX = FRAME_MAX - 8
"""A responder reads a request's return address from one-frame deliveries only."""
PREFETCH_MAX = 65_535
"""Basic.Qos prefetch-count is a 16-bit field."""
AMQP_URL = TargetOption(
    "--amqp-url", "Use this broker (amqp://user:pass@host:port/vhost, amqps:// for TLS) "
    "instead of starting a private rabbitmq-server.", secret=True)
URL_ENV = secret_env_name(AMQP_URL.flag)
"""Where ``--amqp-url`` may come from instead: keeps a password off the command line."""
CLIENT = TargetOption("--amqp-client", "Client path: 'fast' (blocks of frames per write, "
                      "deliveries parsed per read: measures RabbitMQ) or 'aio-pika' (what an "
                      "aio-pika app sees).", default="fast", choices=CLIENTS)
EXCHANGE = TargetOption("--amqp-exchange", "fanout: an exchange per topic; topic: one topic "
                        "exchange, the topic as routing key.", default="fanout",
                        choices=EXCHANGE_KINDS)
DURABLE = TargetOption("--durable", "rabbitmq: a named durable queue per subscriber that keeps "
                       "collecting while it is away (durable subscriber); else exclusive, "
                       "auto-delete queues.", default=False, kind="flag")
CONFIRM_WINDOW = TargetOption("--confirm-window", "rabbitmq: publisher confirms with at most N "
                              "publishes unconfirmed; 0 = no confirms.", default=0, kind="int",
                              min=0)
PERSISTENT = TargetOption("--persistent", "rabbitmq: persistent messages (delivery mode 2; "
                          "written to disk by durable queues).", default=False, kind="flag")
QUORUM = TargetOption("--quorum", "rabbitmq: quorum queues (with --durable).", default=False,
                      kind="flag")
PREFETCH = TargetOption("--amqp-prefetch", "Basic.Qos prefetch count of every consumer "
                        "(0 = unlimited).", default=DEFAULT_PREFETCH, kind="int", min=0,
                        max=PREFETCH_MAX)
ACK = TargetOption("--amqp-ack", "auto (no acks: at most once), each, or multi:N (one "
                   "multiple-ack per N deliveries, N <= prefetch; tasks: also after an idle "
                   "gap).", default=DEFAULT_ACK)
NACK_EVERY = TargetOption("--amqp-nack-every", "rabbitmq tasks: nack (requeue) every K-th fresh "
                          "task instead of doing it, so the broker redelivers it; 0 = none.",
                          default=0, kind="int", min=0)
REPLY = TargetOption("--amqp-reply", "rabbitmq rpc: replies by direct reply-to "
                     "(amq.rabbitmq.reply-to) or to a reply queue per requester.",
                     default="direct", choices=REPLY_MODES)
MAX_LENGTH = TargetOption("--amqp-max-length", "x-max-length of every subscriber queue: beyond "
                          "it the oldest messages are dropped (and counted lost); 0 = unbounded.",
                          default=0, kind="int", min=0)


def parse_ack(text: str, prefetch: int) -> tuple[str, int]:
    """``--amqp-ack auto | each | multi[:N]`` -> (mode, N). Raises :class:`TargetError`.

    ``multi:N`` acks once per N deliveries; N must not exceed the prefetch count (the
    broker would stop at the prefetch and wait for an ack that never comes).
    """
    m = _ACK_RE.match(text.strip())
    if not m:
        raise TargetError(f"--amqp-ack must be auto, each or multi:N, got {text!r}")
    mode = m.group(1).split(":")[0]
    every = int(m.group(2)) if m.group(2) else max(1, (prefetch or DEFAULT_PREFETCH) // 4)
    if mode == "multi" and (every < 1 or (prefetch and every > prefetch)):
        raise TargetError(f"--amqp-ack multi:{every} needs 1 <= N <= --amqp-prefetch "
                          f"({prefetch}): the broker stops at the prefetch waiting for an ack")
    return mode, every


def layout_of(options: Mapping[str, JSON], topics: tuple[str, ...], run_id: str) -> Layout:
    """The run's :class:`Layout` from the target options (validated)."""
    prefetch = PREFETCH.number(options)
    ack, every = parse_ack(str(ACK.value(options)), prefetch)
    durable, quorum = bool(DURABLE.value(options)), bool(QUORUM.value(options))
    if quorum and not durable:
        raise TargetError("--quorum queues are durable, named queues: add --durable")
    nack_every = NACK_EVERY.number(options)
    if nack_every == 1:
        raise TargetError("--amqp-nack-every 1 would nack every task for ever: use 0 (none) "
                          "or 2 or more")
    if nack_every and ack == "auto":
        raise TargetError("--amqp-nack-every needs acks (--amqp-ack each or multi:N): with "
                          "auto there is nothing to nack")
    return Layout(run_id, topics, str(EXCHANGE.value(options)), durable, quorum,
                  bool(PERSISTENT.value(options)), CONFIRM_WINDOW.number(options), prefetch,
                  ack, every, MAX_LENGTH.number(options), nack_every, str(REPLY.value(options)))


def given_url(options: Mapping[str, JSON]) -> str | None:
    """``--amqp-url`` (given on the command line or by ``$MSGBENCH_AMQP_URL``, which the
    CLI reads), else None: start a private broker."""
    return str(AMQP_URL.value(options) or "") or None


def _url(text: str) -> AmqpUrl:
    try:
        return parse_url(text)
    except ValueError as exc:
        raise TargetError(f"invalid --amqp-url: {exc}") from None


async def _describe(url: AmqpUrl) -> dict[str, JSON]:
    conn = await connect(url)
    conn.close()
    props = conn.server
    return {"version": str(props.get("version", "unknown")),
            "product": str(props.get("product", "unknown")),
            "platform": str(props.get("platform", "unknown")),
            "cluster_name": str(props.get("cluster_name", ""))}


def describe(url: AmqpUrl) -> dict[str, JSON]:
    """Log in once and return the broker's facts; raises :class:`TargetError` with one line
    (unreachable, login refused ...). Doubles as the readiness check: AMQP answers."""
    try:
        return asyncio.run(_describe(url))
    except AccessRefused as exc:
        raise TargetError(str(exc)) from None
    except AmqpError as exc:
        raise TargetError(str(exc)) from None


def durable_queues(layout: Layout, subs: int, pattern: str) -> list[str]:
    """The durable queues a run leaves on a broker (none unless ``--durable``).

    A group's name is the driver's (``g<topic index>``, one group per topic); deleting a
    queue that is not there is harmless (RabbitMQ's ``Queue.Delete`` is idempotent)."""
    if not layout.durable:
        return []
    if pattern == "tasks":
        return [layout.shared_queue(f"g{i}", t).name for i, t in enumerate(layout.topics)]
    if pattern == "rpc":
        return [layout.request_queue(t).name for t in layout.topics]
    return [layout.sub_queue(sid) for sid in range(subs)]


async def _cleanup(url: AmqpUrl, layout: Layout, queues: list[str]) -> str:
    conn = await _step(connect(url))
    try:
        for queue in queues:
            await _step(conn.call(commands.Queue.Delete(queue=queue), commands.Queue.DeleteOk))
        for name in layout.exchanges():
            await _step(conn.call(commands.Exchange.Delete(exchange=name),
                                  commands.Exchange.DeleteOk))
    finally:
        conn.close()
    return f"deleted the run's exchanges and queues msgbench.{layout.run_id}.*"


async def _step(call: Coroutine[Any, Any, _T]) -> _T:
    return await asyncio.wait_for(call, CLEANUP_STEP_TIMEOUT_S)


def cleanup(url: AmqpUrl, layout: Layout, queues: list[str]) -> str:
    """Best effort: delete the run's exchanges and durable ``queues`` from a user's broker;
    a broker that does not answer one step within :data:`CLEANUP_STEP_TIMEOUT_S` (the run
    may have failed because it stopped) is left as it is."""
    try:
        return asyncio.run(asyncio.wait_for(_cleanup(url, layout, queues), CLEANUP_TIMEOUT_S))
    except TimeoutError:
        return (f"exchanges and queues msgbench.{layout.run_id}.* may be left: the broker did "
                "not answer in time")
    except AmqpError as exc:
        return f"exchanges and queues msgbench.{layout.run_id}.* may be left: {exc}"


class RabbitTarget(Target):
    """RabbitMQ broadcast; see the module docstring."""

    name = "rabbitmq"
    description = ("AMQP 0-9-1 broker: a fanout (or topic) exchange, a queue per subscriber, "
                   "transient or --durable; a work queue per group; RPC with direct reply-to")
    patterns = frozenset({Pattern.BROADCAST, Pattern.TASKS, Pattern.RPC})
    faults = FaultPlan(
        Unreachable(("--amqp-url", "amqp://127.0.0.1:{port}/"), "cannot reach RabbitMQ"),
        # the session may share one node for runs that do not kill it (each takes seconds)
        Login("--amqp-url", private_broker, "refused the login", env=URL_ENV, reuse=True),
        (ServerFault("rabbitmq", "beam.smp", "rabbitmq-server"),),
        # a responder busy with its work holds unacked requests when it dies: requeued
        responder_runs=(("--work", "fixed:2ms"),), needs=("rabbitmq-server",))
    options = (AMQP_URL, CLIENT, EXCHANGE, DURABLE, CONFIRM_WINDOW, PERSISTENT, QUORUM,
               PREFETCH, ACK, NACK_EVERY, REPLY, MAX_LENGTH)

    def check(self) -> Availability:
        """Ready when rabbitmq-server is installed; a --amqp-url broker needs nothing local."""
        if check_installed() is None:
            return Availability(True, f"rabbitmq-server at {server_script()}, or any broker "
                                "via --amqp-url")
        return Availability(True, "rabbitmq-server not found: runs only with --amqp-url "
                            "amqp://user:pass@host:port/vhost, or install it (Debian/Ubuntu: "
                            "sudo apt-get install rabbitmq-server)")

    def validate(self, options: Mapping[str, JSON]) -> None:
        """Reject a malformed URL, bad numbers or ack mode, --quorum without --durable."""
        given = given_url(options)
        if given:
            _url(given)
        layout_of(options, (), "x")
        if options.get("amqp_client") == "aio-pika" and not importlib.util.find_spec("aio_pika"):
            raise TargetError("--amqp-client aio-pika needs aio-pika: pip install aio-pika")

    @contextlib.contextmanager
    def serve(self, spec: ServeSpec) -> Iterator[Endpoint]:
        """A private broker, or the user's (cleaned up after); see the module docstring."""
        layout = layout_of(spec.options, spec.topics, secrets.token_hex(3))
        client = str(spec.options.get("amqp_client") or "fast")
        if spec.pattern == "rpc" and spec.size > RPC_SIZE_MAX:
            raise TargetError(f"rabbitmq rpc carries requests of at most {RPC_SIZE_MAX} bytes "
                              f"(one body frame), not --size {spec.size}")
        info: dict[str, Any] = {"client": client, **layout.describe(),
                                **layout.describe_pattern(spec.pattern), "run_id": layout.run_id}
        if spec.pattern != "broadcast":
            info.pop("queues")  # a subscriber's own queue: the group / request queues differ
        if layout.persistent and not layout.durable:
            info["note"] = "persistent messages in transient queues are not written to disk"
        given = given_url(spec.options)
        if given:
            url = _url(given)
            info.update(describe(url), managed=False, measured=False, url=url.display())
            data = {"url": asdict(url), "layout": layout.to_json(), "client": client}
            yield Endpoint(data=data, info=info)
            info["cleanup"] = cleanup(url, layout,
                                      durable_queues(layout, spec.subs, spec.pattern))
            return
        with private_broker() as broker:
            url = parse_url(broker.url)
            info.update(describe(url), managed=True, measured=True,
                        startup_s=broker.startup_s, settings=broker.settings)
            data = {"url": asdict(url), "layout": layout.to_json(), "client": client}
            yield Endpoint(data=data, processes=(ServerProcess("rabbitmq-server", broker.pid),),
                           info=info)

    def client(self, endpoint: Mapping[str, JSON], options: Mapping[str, JSON]) -> Client:
        """The fast or the aio-pika client, as chosen by ``--amqp-client``."""
        url = endpoint_url(dict(endpoint))
        layout = Layout.from_json(endpoint["layout"])
        if endpoint.get("client") == "aio-pika":
            from msgbench.targets.rabbitmq.pika import PikaClient

            return PikaClient(url, layout)
        return FastClient(url, layout)

"""The Target interface: what a messaging design must provide to be measured.

A target knows how to start (or find) its servers and how to build publishers
and subscribers. It never sees statistics and never looks inside a payload: the
driver owns the envelope, the target only carries opaque bytes.

Two halves live in two kinds of process:

* ``Target.serve`` runs in the coordinator. It starts whatever servers the
  design needs and yields an :class:`Endpoint`: JSON data the workers need to
  connect, the server processes whose cost is measured, and facts to record.
* ``Target.client`` runs in each worker process, on its event loop, and builds
  :class:`Publisher` and :class:`Subscription` objects (and, for request/reply,
  :class:`Requester` and responder subscriptions).

Which patterns a target carries is :attr:`Target.patterns`:

* ``broadcast``: ``subscribe(..., group=None)`` gets every message of its topics;
* ``tasks``: ``subscribe(..., group="g0")``: the subscriptions of one group share
  the messages of their topics, each message to one member (competing consumers).
  The target hands them over with :meth:`Sink.handle` and acknowledges a message
  only once that returns; a message the design delivers again (after a crash, a
  nack, a timeout) is handed over with ``redelivered=True``;
* ``rpc``: :meth:`Client.requester` sends requests whose replies come back to the
  requester's sink; :meth:`Client.responder` answers the requests of its topics
  with what its :class:`Service` returns, to the return address of each request.
  Correlation is the driver's business: the reply's bytes carry it, and the
  target only routes a reply to the requester whose request it answers.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:  # variants.py builds on this module's types
    from msgbench.api.variants import Variant

from msgbench.api.faults import FaultPlan

JSON = Any
"""A value that survives ``json.dumps`` / ``json.loads`` unchanged."""


class TargetError(Exception):
    """A target cannot run as configured; the message is one line for the user."""


class Pattern(StrEnum):
    """The messaging pattern of a run, and what a target declares it carries."""

    BROADCAST = "broadcast"
    """Fan-out: every message to every subscriber of its topic."""
    TASKS = "tasks"
    """Competing consumers: every message done once by one member of its topic's group."""
    RPC = "rpc"
    """Request/reply: one reply per request, back to the requester that sent it."""


PAYLOAD_FIRST_BYTE_MAX = 0x7F
"""Every payload the driver hands a target starts with a byte no greater than this, so a
transport may tell a payload from its own framing by its first byte (and nothing else)."""


OptionKind = Literal["str", "int", "flag"]
"""What a :class:`TargetOption` holds: text, a whole number, or a boolean switch."""
SECRET_ENV_PREFIX = "MSGBENCH_"


def secret_env_name(flag: str) -> str:
    """The environment variable that may carry ``flag``'s value instead of the command line
    (``--amqp-url`` -> ``MSGBENCH_AMQP_URL``): how msgbench hands a password to its own
    child processes, since a command line is visible to every user of the machine."""
    return SECRET_ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


@dataclass(frozen=True)
class TargetOption:
    """A command-line option a target adds to ``msgbench run``, declared once: the CLI
    option, its validation, the docs and the handling of secrets all derive from it.

    ``kind``: see :data:`OptionKind`; ``choices`` restricts a string option; ``min`` and
    ``max`` bound a whole number (inclusive); ``secret``: the value may hold a password,
    so it may come from the environment variable :attr:`env` instead, and msgbench passes
    it to child processes that way and masks it in everything it prints.
    """

    flag: str
    help: str
    default: str | int | bool | None = None
    kind: OptionKind = "str"
    choices: tuple[str, ...] = ()
    min: int | None = None
    max: int | None = None
    secret: bool = False

    @property
    def key(self) -> str:
        """The option's name in ``RunConfig.target_options``: ``--redis-url`` -> ``redis_url``."""
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def env(self) -> str | None:
        """The environment variable a secret option may come from; None for the others."""
        return secret_env_name(self.flag) if self.secret else None

    def parse(self, value: JSON) -> JSON:
        """``value`` (from the command line, a sweep matrix, a config) checked and converted
        to the option's kind; raises :class:`TargetError` with one line naming the flag."""
        if value is None:
            return None
        if self.kind == "flag":
            if isinstance(value, bool):
                return value
            raise TargetError(f"{self.flag} is a switch: give it or leave it out")
        if self.kind == "int":
            return self._whole(value)
        text = str(value)
        if self.choices and text not in self.choices:
            raise TargetError(f"{self.flag} must be one of {', '.join(self.choices)}, "
                              f"got {text!r}")
        return text

    def value(self, options: Mapping[str, JSON]) -> JSON:
        """This option's value in a run's ``options`` (``RunConfig.target_options``), checked
        by :meth:`parse`; its default where the options do not hold it. Raises
        :class:`TargetError` with one line naming the flag."""
        given = options.get(self.key)
        return self.parse(self.default if given is None else given)

    def number(self, options: Mapping[str, JSON]) -> int:
        """:meth:`value` of a whole-number option with a default: always an ``int``
        within the declared bounds."""
        if self.kind != "int" or not isinstance(self.default, int):
            raise TypeError(f"{self.flag} is not a whole-number option with a default")
        value = self.value(options)
        assert isinstance(value, int)  # parse() of an "int" option returns one
        return value

    def _whole(self, value: JSON) -> int:
        if isinstance(value, bool):
            raise TargetError(f"{self.flag} takes a whole number, got {value!r}")
        try:
            n = int(value)
        except (TypeError, ValueError):
            raise TargetError(f"{self.flag} takes a whole number, got {value!r}") from None
        if self.min is not None and n < self.min:
            raise TargetError(f"{self.flag} must be at least {self.min}, got {n}")
        if self.max is not None and n > self.max:
            raise TargetError(f"{self.flag} must be at most {self.max}, got {n}")
        return n


@dataclass(frozen=True)
class Availability:
    """Whether a target can run on this machine; ``detail`` says what it found or needs."""

    ok: bool
    detail: str


@dataclass(frozen=True)
class ServeSpec:
    """What ``serve`` needs to know about the run: client counts, topics, options."""

    pubs: int
    subs: int
    topics: tuple[str, ...]
    options: Mapping[str, JSON]
    size: int = 0
    """Message size in bytes (envelope included), for servers that bound frame sizes."""
    pattern: str = Pattern.BROADCAST
    """The run's pattern (``broadcast``, ``tasks``, ``rpc``), for a target whose modes
    carry different patterns: it refuses a mismatch here with :class:`TargetError`."""


@dataclass(frozen=True)
class ServerProcess:
    """A process a target started (or uses) whose CPU and memory belong to the result."""

    role: str
    pid: int


@dataclass(frozen=True)
class Endpoint:
    """How workers reach the servers, which processes to measure, and what to record.

    ``data`` crosses into worker processes as JSON; ``info`` goes into the
    result document verbatim (server versions, settings that shape the outcome).
    """

    data: Mapping[str, JSON] = field(default_factory=dict)
    processes: tuple[ServerProcess, ...] = ()
    info: Mapping[str, JSON] = field(default_factory=dict)


class Sink(abc.ABC):
    """Where a subscription pushes what it receives. Implemented by the driver."""

    @abc.abstractmethod
    def deliver(self, payloads: Sequence[bytes], offset: int = 0) -> None:
        """Hand over payloads in arrival order. Must not block; called on the worker's loop.

        With ``offset``, each item is the transport's message and the payload starts
        ``offset`` bytes into it (a topic prefix, say), so it need not be cut out.
        """

    def deliver_block(self, block: bytes, first: int, count: int, stride: int,
                      offset: int = 0, size: int | None = None) -> None:
        """Hand over ``count`` payloads that lie in ``block`` at a fixed ``stride``.

        Item ``i`` starts at ``first + i * stride``; its payload starts ``offset``
        bytes into the item and is ``size`` bytes long (default: to the end of the
        item). The result is the same as :meth:`deliver` with those payloads; this
        form spares a target that already holds them side by side (one socket read,
        one joined buffer) from cutting out each one.
        """
        n = stride - offset if size is None else size
        start = first + offset
        self.deliver([block[p : p + n] for p in range(start, start + count * stride, stride)])

    async def handle(self, payloads: Sequence[bytes], redelivered: bool = False) -> None:
        """Hand over messages of a shared group (competing consumers), in arrival order.

        Returns once the driver has done the work they stand for (``--work``); a
        target acknowledges them only then. ``redelivered`` says the design delivers
        them again (after a crash, a nack, a timeout). The default delivers them.
        """
        self.deliver(payloads)

    @abc.abstractmethod
    def disconnected(self, reason: str) -> None:
        """The transport dropped this subscriber (server gone, output buffer limit ...)."""

    @abc.abstractmethod
    def note(self, reason: str) -> None:
        """Say something the result must mention about this subscriber, once per distinct
        text (for example: messages were trimmed before it could read them)."""


@dataclass(frozen=True)
class QueueDepth:
    """How many of a shared group's tasks sit in the design at one instant.

    ``waiting``: in the queue, handed to no member yet (list length, stream lag, a queue's
    ready count); ``unacked``: handed to a member and not yet acknowledged (a processing
    list, XPENDING, a queue's unacked count). ``None`` where the design cannot tell.
    """

    waiting: int | None = None
    unacked: int | None = None


class Publisher(abc.ABC):
    """Sends opaque payloads on a topic."""

    @abc.abstractmethod
    async def publish(self, topic: str, payloads: Sequence[bytes]) -> None:
        """Send ``payloads`` on ``topic`` in order.

        Returns once the batch has been handed to the transport; may wait for
        flow control. Raises on a broken connection.
        """

    async def publish_block(self, topic: str, block: bytes, count: int, size: int) -> None:
        """Send the ``count`` payloads of ``size`` bytes that ``block`` holds back to back.

        The same as :meth:`publish` with those payloads (which is what this default
        does); a target that can frame the whole block at once overrides it.
        """
        await self.publish(topic, [block[p : p + size] for p in range(0, count * size, size)])

    async def close(self) -> None:  # noqa: B027 - optional hook, nothing to close by default
        """Release the publisher's resources."""


class Subscription(abc.ABC):
    """A live subscription; pushes into its :class:`Sink` until closed."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop receiving and release resources."""


class Requester(abc.ABC):
    """Sends requests; their replies arrive at the sink it was opened with."""

    @abc.abstractmethod
    async def request(self, topic: str, payloads: Sequence[bytes]) -> None:
        """Send ``payloads`` as requests on ``topic``, in order, each carrying this
        requester's return address. Returns once handed to the transport."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the requester's resources."""


class Service(abc.ABC):
    """What a responder answers with. Implemented by the driver."""

    @abc.abstractmethod
    async def answer(self, requests: Sequence[bytes]) -> list[bytes]:
        """The replies to ``requests``, one each, in order (after ``--work``)."""


class Client(abc.ABC):
    """The worker-side half of a target: one per worker process."""

    @abc.abstractmethod
    async def publisher(self, pub_id: int) -> Publisher:
        """Open a publisher with the given id."""

    @abc.abstractmethod
    async def subscribe(self, sub_id: int, topics: Sequence[str], sink: Sink,
                        group: str | None = None) -> Subscription:
        """Subscribe to ``topics``; returns once the subscription is in place.

        With ``group`` (a target that carries the ``tasks`` pattern), the group's
        subscriptions share the messages: each to one member, via :meth:`Sink.handle`.
        "In place" means as far as the target can tell; the driver's probe
        phase covers designs (ZeroMQ) where a subscription propagates later.
        """

    async def requester(self, req_id: int, sink: Sink) -> Requester:
        """Open requester ``req_id``, whose replies go to ``sink`` (``rpc`` pattern)."""
        raise TargetError("this target does not do request/reply")

    async def responder(self, resp_id: int, topics: Sequence[str],
                        service: Service) -> Subscription:
        """Answer the requests of ``topics`` with ``service``, sharing them with the other
        responders of those topics (``rpc`` pattern)."""
        raise TargetError("this target does not do request/reply")

    async def queue_depth(self, topic: str, group: str) -> QueueDepth | None:
        """The depth of ``group``'s queue for ``topic`` now, asked about once a second by
        the worker holding the group's first member (``tasks`` pattern). ``None``
        (the default) when the design keeps no queue it can measure (ZeroMQ's pipes).
        Must answer within a second and must not disturb the members' own traffic."""
        return None

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release anything shared by this worker's clients."""


class Target(abc.ABC):
    """A messaging design under test. Subclasses are registered as entry points."""

    name: ClassVar[str]
    description: ClassVar[str]
    variants: ClassVar[tuple[Variant, ...]] = ()
    """The designs this target makes, in the order tables show them (see
    :mod:`msgbench.api.variants`); empty: one, the target with its defaults."""
    colocated: ClassVar[bool] = False
    """True when publishers and subscribers must share one worker process."""
    options: ClassVar[tuple[TargetOption, ...]] = ()
    patterns: ClassVar[frozenset[Pattern]] = frozenset({Pattern.BROADCAST})
    """The patterns this target carries (see the module docstring)."""
    faults: ClassVar[FaultPlan] = FaultPlan()
    """How the shared fault suite may break it (see :mod:`msgbench.api.faults`); the default
    kills a responder of an ``rpc`` target and nothing else."""

    def check(self) -> Availability:
        """Say whether this target can run here (servers installed, ...)."""
        return Availability(True, "built in")

    def validate(self, options: Mapping[str, JSON]) -> None:  # noqa: B027 - optional hook
        """Reject option values that cannot work with :class:`TargetError`."""

    @contextlib.contextmanager
    def serve(self, spec: ServeSpec) -> Iterator[Endpoint]:
        """Start servers for the run and stop them on exit (coordinator side).

        The default has no servers.
        """
        yield Endpoint()

    @abc.abstractmethod
    def client(self, endpoint: Mapping[str, JSON], options: Mapping[str, JSON]) -> Client:
        """Build the worker-side client from ``Endpoint.data`` (worker side)."""


DeliverFn = Callable[[Sequence[bytes]], None]

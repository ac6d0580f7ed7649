"""The Target interface: what a messaging design must provide to be measured.

A target knows how to start (or find) its servers and how to build publishers
and subscribers. It never sees statistics and never looks inside a payload: the
driver owns the envelope, the target only carries opaque bytes.

Two halves live in two kinds of process:

* ``Target.serve`` runs in the coordinator. It starts whatever servers the
  design needs and yields an :class:`Endpoint`: JSON data the workers need to
  connect, the server processes whose cost is measured, and facts to record.
* ``Target.client`` runs in each worker process, on its event loop, and builds
  :class:`Publisher` and :class:`Subscription` objects.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

JSON = Any
"""A value that survives ``json.dumps`` / ``json.loads`` unchanged."""


class TargetError(Exception):
    """A target cannot run as configured; the message is one line for the user."""


@dataclass(frozen=True)
class TargetOption:
    """A command-line option a target adds to ``msgbench run``.

    ``choices`` restricts a string option; ``kind`` is ``"str"``, ``"int"`` or
    ``"flag"`` (a boolean switch).
    """

    flag: str
    help: str
    default: str | int | bool | None = None
    kind: str = "str"
    choices: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The option's name in ``RunConfig.target_options``: ``--redis-url`` -> ``redis_url``."""
        return self.flag.lstrip("-").replace("-", "_")


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

    @abc.abstractmethod
    def disconnected(self, reason: str) -> None:
        """The transport dropped this subscriber (server gone, output buffer limit ...)."""

    @abc.abstractmethod
    def note(self, reason: str) -> None:
        """Say something the result must mention about this subscriber, once per distinct
        text (for example: messages were trimmed before it could read them)."""


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


class Client(abc.ABC):
    """The worker-side half of a target: one per worker process."""

    @abc.abstractmethod
    async def publisher(self, pub_id: int) -> Publisher:
        """Open a publisher with the given id."""

    @abc.abstractmethod
    async def subscribe(self, sub_id: int, topics: Sequence[str], sink: Sink) -> Subscription:
        """Subscribe to ``topics``; returns once the subscription is in place.

        "In place" means as far as the target can tell; the driver's probe
        phase covers designs (ZeroMQ) where a subscription propagates later.
        """

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release anything shared by this worker's clients."""


class Target(abc.ABC):
    """A messaging design under test. Subclasses are registered as entry points."""

    name: ClassVar[str]
    description: ClassVar[str]
    colocated: ClassVar[bool] = False
    """True when publishers and subscribers must share one worker process."""
    options: ClassVar[tuple[TargetOption, ...]] = ()

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

"""``redis-rpc``: request/reply over Redis lists, each request carrying its return address.

The source text's request/reply on a one-way channel: a requester ``LPUSH``es its
requests onto the topic's request list, each framed with its return address
(the name of the requester's own reply list); a responder pops up to
:data:`POP_COUNT` at a time (``BLMPOP ... RIGHT COUNT n``), has the driver answer
them, and ``LPUSH``es each reply onto the list its request named; the requester
pops its replies from its own list. Correlation is the driver's (the reply
carries it), routing is Redis's: a reply can only reach the list it was sent to.

With ``--rpc-reply pubsub`` the return address is a pub/sub channel instead: the
responder ``PUBLISH``es the reply there, and a requester that is not subscribed
at that moment never gets it (pub/sub keeps nothing), which the driver counts
as a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from msgbench.api.target import (
    JSON,
    Availability,
    Client,
    Endpoint,
    Pattern,
    Publisher,
    Requester,
    ServeSpec,
    Service,
    Sink,
    Subscription,
    Target,
    TargetError,
    TargetOption,
)
from msgbench.api.variants import mode_variants
from msgbench.kit.redis_cluster import RedisAddress, SlotMap, connect, deploy
from msgbench.kit.redis_server import REDIS_URL_OPTION
from msgbench.kit.resp import RespConnection, RespError, command
from msgbench.kit.resp_pubsub import PubSubConnection
from msgbench.targets.redis.faults import redis_faults
from msgbench.targets.redis.pubsub import RedisTarget

KEY_PREFIX = "msgbench:rpc:"
POP_COUNT = 256
"""Most requests (or replies) one pop takes: a responder's batch."""
BLOCK_S = 1
"""How long one blocking pop waits on the server when nothing is there."""
POP_TIMEOUT_S = BLOCK_S + 5.0
"""How long the client waits for a blocking pop's answer before it calls the server gone."""
REPLY_MODES = ("list", "pubsub")
_SEP = b"|"
"""Between the return address and the request: list and channel names hold no ``|``."""


def request_key(topic: str) -> str:
    """The list a topic's requests wait on."""
    return f"{KEY_PREFIX}req:{topic}"


def reply_address(req_id: int) -> str:
    """Requester ``req_id``'s return address: its own reply list (or channel)."""
    return f"{KEY_PREFIX}rep:{req_id}"


class _Requester(Requester):
    def __init__(self, conn: RespConnection, address: bytes, reader: Subscription) -> None:
        self.conn = conn
        self.address = address + _SEP
        self.reader = reader

    async def request(self, topic: str, payloads: Sequence[bytes]) -> None:
        self.conn.check()
        key = request_key(topic)
        self.conn.send_counted(command("LPUSH", key, *(self.address + p for p in payloads)), 1)
        await self.conn.wait_capacity(64)

    async def close(self) -> None:
        await self.reader.close()
        self.conn.close()


class _PubSubReader(Subscription):
    def __init__(self, conn: PubSubConnection) -> None:
        self.conn = conn

    async def close(self) -> None:
        self.conn.close()


class _Loop(Subscription):
    """A task popping from a list until closed; a lost connection is reported once."""

    def __init__(self, conns: Sequence[Any], body: Any, on_error: Any) -> None:
        self.conns = conns
        self.task = asyncio.ensure_future(self._run(body, on_error))

    @staticmethod
    async def _run(body: Any, on_error: Any) -> None:
        try:
            while True:
                await body()
        except (RespError, ConnectionError, OSError, TimeoutError) as exc:
            on_error(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
        for c in self.conns:
            c.close()


def _popped(reply: Any) -> list[bytes]:
    """The items of a ``BLMPOP`` answer (``[key, [items]]``, or nil when it timed out)."""
    if not reply:
        return []
    return list(reply[1])


class RpcClient(Client):
    """A worker's requesters and responders on one Redis."""

    def __init__(self, addr: RedisAddress, reply_mode: str) -> None:
        self.addr = addr
        self.reply_mode = reply_mode

    async def publisher(self, pub_id: int) -> Publisher:
        raise TargetError("redis-rpc carries request/reply only (--pattern rpc)")

    async def subscribe(self, sub_id: int, topics: Sequence[str], sink: Sink,
                        group: str | None = None) -> Subscription:
        raise TargetError("redis-rpc carries request/reply only (--pattern rpc)")

    async def requester(self, req_id: int, sink: Sink) -> Requester:
        address = reply_address(req_id)
        reader: Subscription
        if self.reply_mode == "pubsub":
            sub = await connect(self.addr, PubSubConnection)
            sub.sink = sink
            await sub.subscribe("SUBSCRIBE", [address])
            reader = _PubSubReader(sub)
        else:
            conn = await connect(self.addr, RespConnection)

            async def body() -> None:
                got = _popped(await conn.call("BLMPOP", BLOCK_S, 1, address, "RIGHT",
                                                "COUNT", POP_COUNT, timeout=POP_TIMEOUT_S))
                if got:
                    sink.deliver(got)

            reader = _Loop([conn], body, sink.disconnected)
        return _Requester(await connect(self.addr, RespConnection), address.encode(), reader)

    async def responder(self, resp_id: int, topics: Sequence[str],
                        service: Service) -> Subscription:
        (topic,) = topics
        popper = await connect(self.addr, RespConnection)
        writer = await connect(self.addr, RespConnection)
        key = request_key(topic)
        verb = "PUBLISH" if self.reply_mode == "pubsub" else "LPUSH"

        async def body() -> None:
            framed = _popped(await popper.call("BLMPOP", BLOCK_S, 1, key, "RIGHT", "COUNT",
                                               POP_COUNT, timeout=POP_TIMEOUT_S))
            if not framed:
                return
            cut = [f.partition(_SEP) for f in framed]
            replies = await service.answer([req for _, _, req in cut])
            out = b"".join(command(verb, addr, rep)
                           for (addr, _, _), rep in zip(cut, replies, strict=True))
            writer.send_counted(out, len(replies))
            await writer.wait_capacity(POP_COUNT * 4)

        def lost(reason: str) -> None:
            # nothing to tell but the requesters' timeouts, which count it; a dead or
            # stopped redis-server is named by the coordinator's watch
            return None

        return _Loop([popper, writer], body, lost)


class RedisRpcTarget(Target):
    """Request/reply over Redis lists with return addresses; see the module docstring."""

    name = "redis-rpc"
    description = ("request/reply on Redis: requests on a list per topic, each reply pushed "
                   "to its requester's own list (the return address), or published")
    patterns = frozenset({Pattern.RPC})
    faults = redis_faults("rpc")
    options = (
        REDIS_URL_OPTION,
        TargetOption("--rpc-reply", "Where replies go back: 'list' (the requester's own list, "
                     "kept until read) or 'pubsub' (a channel: lost if nobody listens).",
                     default="list", choices=REPLY_MODES),
    )

    variants = mode_variants(options, "--rpc-reply")
    """Replies to the requester's list, and by pub/sub: two designs."""

    def check(self) -> Availability:
        """Same needs as the pub/sub target: redis-server, or a server via --redis-url."""
        return RedisTarget().check()

    @contextlib.contextmanager
    def serve(self, spec: ServeSpec) -> Iterator[Endpoint]:
        """A private redis-server, or the user's (one node: lists are not sharded here)."""
        with deploy(spec.options.get("redis_url")) as dep:
            if len(dep.slots.nodes) > 1:
                raise TargetError("redis-rpc runs on one Redis node, not a cluster")
            info = {**dep.info, "reply": spec.options.get("rpc_reply", "list"),
                    "pop_count": POP_COUNT}
            yield Endpoint(data={"slots": dep.slots.to_json()}, processes=dep.processes,
                           info=info)

    def client(self, endpoint: Mapping[str, JSON], options: Mapping[str, JSON]) -> Client:
        """An :class:`RpcClient` for this worker."""
        slots = SlotMap.from_json(endpoint["slots"])
        return RpcClient(slots.nodes[0], str(options.get("rpc_reply") or "list"))

"""Where the Redis targets' servers come from, how to reach them, which node serves what.

:func:`deploy` gives a run its Redis: a private redis-server (or a private
3-node Redis Cluster for sharded pub/sub) started on free loopback ports and
stopped afterwards, or the user's server from ``--redis-url``, which is only
described and never stopped. Either way the result is a :class:`Deployment`:
the nodes, the slot map that routes a channel or key to its node (CRC16 of the
name, as Redis Cluster does), the server processes whose cost is measured and
the facts recorded in the result. :func:`connect` opens a logged-in
connection (:mod:`msgbench.kit.resp`) to a :class:`RedisAddress`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from msgbench.api.target import JSON, ServerProcess, TargetError
from msgbench.kit.procs import free_port, which
from msgbench.kit.redis_server import RedisServer, describe, private_server
from msgbench.kit.resp import ConnectionClosed, RespConnection, RespError
from msgbench.kit.urls import mask_url

CONNECT_TIMEOUT_S = 5.0
"""How long a connection (TCP, TLS, AUTH, SELECT) may take before it counts as unreachable."""
DEFAULT_PORT = 6379
SCHEMES = ("redis", "rediss")
CLUSTER_NODES = 3
CLUSTER_CREATE_TIMEOUT_S = 30.0
CLUSTER_STATE_TIMEOUT_S = 15.0
CLUSTER_POLL_S = 0.05
CLUSTER_NODE_TIMEOUT_MS = 5000
EXTERNAL_NOTE = "external server: msgbench did not start it, so its CPU and memory are not measured"


@dataclass(frozen=True)
class RedisAddress:
    """Where a Redis server is and how to log in: the parts of a ``redis://`` URL."""

    host: str
    port: int = DEFAULT_PORT
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    verify_tls: bool = True

    def display(self) -> str:
        """``redis://host:port/db`` with the password hidden, for messages."""
        auth = "***@" if self.password else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'rediss' if self.tls else 'redis'}://{auth}{host}:{self.port}/{self.db}"

    def node(self, host: str, port: int) -> RedisAddress:
        """The same credentials and TLS settings for another node (cluster nodes use db 0)."""
        return replace(self, host=host, port=port, db=0)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (crosses into worker processes)."""
        return {
            "host": self.host,
            "port": self.port,
            "db": self.db,
            "username": self.username,
            "password": self.password,
            "tls": self.tls,
            "verify_tls": self.verify_tls,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RedisAddress:
        """Inverse of :meth:`to_json`."""
        return cls(**d)


def parse_url(url: str) -> RedisAddress:
    """Parse ``redis://[[user]:password@]host[:port][/db]`` or ``rediss://...`` (TLS).

    ``?ssl_cert_reqs=none`` on a ``rediss`` URL turns certificate checks off.
    Raises ValueError with one line when the URL cannot be used.
    """
    shown = mask_url(url)
    parts = urlsplit(url.strip())
    if parts.scheme not in SCHEMES:
        raise ValueError(f"invalid Redis URL {shown!r}: use redis://host:port/db or rediss://...")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(f"invalid Redis URL {shown!r}: bad port") from None
    if not parts.hostname:
        raise ValueError(f"invalid Redis URL {shown!r}: no host")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"invalid Redis URL {shown!r}: the path must be a database number")
    query = parse_qs(parts.query)
    verify = query.get("ssl_cert_reqs", ["required"])[0].lower() != "none"
    return RedisAddress(
        host=parts.hostname,
        port=port,
        db=int(path) if path else 0,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        tls=parts.scheme == "rediss",
        verify_tls=verify,
    )


P = TypeVar("P", bound=RespConnection)



def _ssl_context(addr: RedisAddress) -> ssl.SSLContext | None:
    if not addr.tls:
        return None
    ctx = ssl.create_default_context()
    if not addr.verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def connect(addr: RedisAddress, factory: Callable[[], P],
                  timeout: float = CONNECT_TIMEOUT_S) -> P:
    """Open a connection, log in (``AUTH``) and select the database.

    Raises :class:`RespError` with one line: unreachable, refused password, ...
    """
    loop = asyncio.get_running_loop()
    try:
        _, proto = await asyncio.wait_for(
            loop.create_connection(factory, addr.host, addr.port, ssl=_ssl_context(addr)),
            timeout,
        )
    except TimeoutError:
        raise RespError(f"cannot reach Redis at {addr.display()} within {timeout:g} s") from None
    except OSError as exc:
        raise RespError(f"cannot reach Redis at {addr.display()}: {exc}") from None
    try:
        if addr.password is not None:
            auth: tuple[str, ...] = (addr.password,)
            if addr.username:
                auth = (addr.username, addr.password)
            try:
                await proto.call("AUTH", *auth, timeout=timeout)
            except ConnectionClosed:
                raise
            except RespError as exc:
                if "timed out" in str(exc).lower() or "did not answer" in str(exc).lower():
                    raise  # silence is not a refusal
                raise RespError(f"Redis at {addr.display()} refused the password: {exc}") from None
        if addr.db:
            await proto.call("SELECT", addr.db, timeout=timeout)
    except BaseException:
        proto.close()
        raise
    return proto


@dataclass(frozen=True)
class SlotMap:
    """The nodes of a deployment and which one owns each hash slot."""

    nodes: tuple[RedisAddress, ...]
    ranges: tuple[tuple[int, int, int], ...] = ((0, REDIS_CLUSTER_HASH_SLOTS - 1, 0),)
    """``(first slot, last slot, node index)``; one node owns everything when not a cluster."""

    def node_for(self, name: str) -> int:
        """Index of the node that serves channel or key ``name``."""
        slot = key_slot(name.encode())
        for lo, hi, node in self.ranges:
            if lo <= slot <= hi:
                return node
        raise TargetError(f"no Redis Cluster node serves slot {slot} (channel {name!r})")

    def to_json(self) -> dict[str, JSON]:
        """A JSON-ready dict (crosses into worker processes)."""
        return {"nodes": [n.to_json() for n in self.nodes],
                "ranges": [list(r) for r in self.ranges]}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SlotMap:
        """Inverse of :meth:`to_json`."""
        return cls(
            tuple(RedisAddress.from_json(n) for n in d["nodes"]),
            tuple((int(a), int(b), int(c)) for a, b, c in d["ranges"]),
        )


@dataclass(frozen=True)
class Deployment:
    """A run's Redis: routing, processes to measure, facts for the result."""

    slots: SlotMap
    processes: tuple[ServerProcess, ...]
    info: dict[str, JSON] = field(default_factory=dict)


def address(url: str) -> RedisAddress:
    """Parse ``url`` or raise :class:`TargetError` with one line."""
    try:
        return parse_url(url)
    except ValueError as exc:
        raise TargetError(str(exc)) from None


async def _cluster_slots(addr: RedisAddress) -> SlotMap | None:
    """The slot map reported by ``addr``, or None when it is not a cluster node."""
    conn = await connect(addr, RespConnection)
    try:
        try:
            reply = await conn.call("CLUSTER", "SLOTS")
        except RespError as exc:
            if "cluster support disabled" in str(exc).lower():
                return None
            raise
    finally:
        conn.close()
    nodes: list[RedisAddress] = []
    ranges: list[tuple[int, int, int]] = []
    for entry in reply:
        lo, hi, master = int(entry[0]), int(entry[1]), entry[2]
        host = master[0].decode() if master[0] else addr.host  # "" means "the one you asked"
        node = addr.node(host, int(master[1]))
        if node not in nodes:
            nodes.append(node)
        ranges.append((lo, hi, nodes.index(node)))
    if not ranges:
        raise TargetError(f"Redis Cluster at {addr.display()} has no slots assigned")
    return SlotMap(tuple(nodes), tuple(sorted(ranges)))


def discover(addr: RedisAddress) -> SlotMap:
    """Ask ``addr`` for its cluster's slot map (``CLUSTER SLOTS``); a lone server owns all."""
    try:
        found = asyncio.run(_cluster_slots(addr))
    except RespError as exc:
        raise TargetError(str(exc)) from None
    return found or SlotMap((addr,))


async def _cluster_ok(addr: RedisAddress) -> bool:
    try:
        conn = await connect(addr, RespConnection)
    except RespError:
        return False  # not answering yet: the caller's deadline decides
    try:
        info = await conn.call("CLUSTER", "INFO")
    except RespError:
        return False
    finally:
        conn.close()
    return b"cluster_state:ok" in info


def _wait_cluster_ok(nodes: Sequence[RedisAddress]) -> None:
    deadline = time.monotonic() + CLUSTER_STATE_TIMEOUT_S
    for node in nodes:
        while not asyncio.run(_cluster_ok(node)):
            if time.monotonic() >= deadline:
                raise TargetError(
                    f"private Redis Cluster not ok after {CLUSTER_STATE_TIMEOUT_S:g} s"
                )
            time.sleep(CLUSTER_POLL_S)


@contextlib.contextmanager
def private_cluster(extra_args: Sequence[str] = (), nodes: int = CLUSTER_NODES
                    ) -> Iterator[list[RedisServer]]:
    """Run a ``nodes``-node Redis Cluster (no replicas) on free loopback ports.

    Each node is a private redis-server (see :func:`private_server`) with
    cluster mode on and its cluster bus on another free port; ``redis-cli
    --cluster create`` assigns the slots. Stopped on exit.
    """
    if not which("redis-cli"):
        raise TargetError("redis-cli is not installed (it comes with redis-server); "
                          "it is needed to build the private cluster for --redis-sharded")
    with contextlib.ExitStack() as stack:
        servers = []
        for _ in range(nodes):
            args = ["--cluster-enabled", "yes", "--cluster-port", str(free_port()),
                    "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS), *extra_args]
            servers.append(stack.enter_context(private_server(args)))
        addrs = [parse_url(s.url) for s in servers]
        argv = ["redis-cli", "--cluster", "create", *(f"{a.host}:{a.port}" for a in addrs),
                "--cluster-replicas", "0", "--cluster-yes"]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, check=False,
                                  timeout=CLUSTER_CREATE_TIMEOUT_S, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise TargetError(f"redis-cli --cluster create did not finish within "
                              f"{CLUSTER_CREATE_TIMEOUT_S:g} s") from None
        if done.returncode != 0:
            last = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
            raise TargetError(f"redis-cli --cluster create failed: {last[0]}")
        _wait_cluster_ok(addrs)
        yield servers


def _server_info(version: str, settings: Mapping[str, str], **facts: JSON) -> dict[str, JSON]:
    return {"server": "redis-server", "version": version, "settings": dict(settings), **facts}


@contextlib.contextmanager
def deploy(url: str | None, *, sharded: bool = False, extra_args: Sequence[str] = ()
           ) -> Iterator[Deployment]:
    """The run's Redis: the user's at ``url`` (with its cluster's nodes, if it is one), else
    a private redis-server, or a private 3-node cluster when ``sharded``.

    Raises :class:`TargetError` with one line when the server cannot be
    reached, refuses the password, or cannot be started.
    """
    if url:
        addr = address(url)
        try:
            version, settings = describe(url)
        except TargetError as exc:
            if addr.password is None and "password" in str(exc):
                raise TargetError(f"Redis at {addr.display()} needs a password: put it in the "
                                  "URL, redis://:PASSWORD@host:port/db") from None
            raise
        # a cluster node's peers serve the other slots: route every channel and key by slot
        slots = discover(addr)
        yield Deployment(slots, (), _server_info(
            version, settings, managed=False, url=addr.display(), nodes=len(slots.nodes),
            measured=False, note=EXTERNAL_NOTE))
        return
    if sharded:
        with private_cluster(extra_args) as servers:
            addrs = tuple(parse_url(s.url) for s in servers)
            slots = discover(addrs[0])
            procs = tuple(ServerProcess(f"redis-server {i}", s.pid or 0)
                          for i, s in enumerate(servers))
            yield Deployment(slots, procs, _server_info(
                servers[0].version, servers[0].settings, managed=True, cluster=True,
                nodes=len(servers), url=addrs[0].display(), measured=True))
        return
    with private_server(extra_args) as server:
        addr = parse_url(server.url)
        yield Deployment(SlotMap((addr,)), (ServerProcess("redis-server", server.pid or 0),),
                         _server_info(server.version, server.settings, managed=True,
                                      url=addr.display(), nodes=1, measured=True))

"""``zmq``: the brokerless ZeroMQ mesh, and its brokered variant (``--zmq-mode proxy``).

(This module also holds the target class; for ``--pattern tasks`` it dispatches to the
PUSH/PULL pipeline, :mod:`.pipeline`, and the load-balancing broker, :mod:`.lbbroker`
and :mod:`.brokered`; for ``--pattern rpc`` to :mod:`.rpc`: REQ/REP, DEALER/ROUTER, and
through a ROUTER/DEALER broker.)

Mesh: each publisher binds a PUB socket; each subscriber connects a SUB socket to every publisher,
subscribing by topic prefix: no broker, no single point of failure. Proxy: publishers connect to
the XSUB side of a forwarder in its own process (:mod:`msgbench.targets.zmq.proxy`), subscribers
to its XPUB side, so mesh and broker compare on one workload.

Framing: one frame per message, ``len(topic) | topic | payload``; the length byte makes a prefix
subscription exact (``\\x02t1`` is not a prefix of ``\\x03t10``: ``t1`` never gets ``t10``).

What ZeroMQ does and msgbench reports rather than hides:

* slow joiners: a message published before a subscription reached the
  publisher is dropped. ``subscribe`` returns after connect + subscribe; the
  driver's probe phase waits until every subscriber hears every publisher.
* high-water marks (``--hwm``): a PUB socket never blocks, it drops at the
  mark, and the driver counts the sequence gaps as lost. ``--zmq-nodrop``
  makes publishers wait there instead (XPUB with ``ZMQ_XPUB_NODROP``).
* a dead forwarder: in proxy mode a socket monitor turns a lost connection to
  it into an exception from ``publish`` and ``Sink.disconnected``.

Receiving drains a plain (non-asyncio) socket in batches from the loop's
reader callback: one ``deliver`` per drain instead of one await per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import zmq

from msgbench.api.target import (
    JSON,
    Availability,
    Client,
    Endpoint,
    Pattern,
    Publisher,
    Requester,
    ServerProcess,
    ServeSpec,
    Service,
    Sink,
    Subscription,
    Target,
    TargetError,
    TargetOption,
)
from msgbench.api.variants import mode_variants
from msgbench.kit.zmq_watch import LinkWatch, readable
from msgbench.targets.zmq import brokered, pipeline, rpc
from msgbench.targets.zmq.faults import ZMQ_FAULTS
from msgbench.targets.zmq.lbbroker import broker
from msgbench.targets.zmq.proxy import forwarder
from msgbench.targets.zmq.settings import (
    BROADCAST_MODES,
    DEFAULT_CREDIT,
    DEFAULT_HWM,
    DEFAULT_REQ_TIMEOUT_MS,
    MODES,
    RECONNECT_IVL_MS,
    RPC_MODES,
    TASK_MODES,
    TRANSPORTS,
    Settings,
    address,
    configure,
    topic_prefix,
)
from msgbench.targets.zmq.waiting import ZmqLinkLost

__all__ = ["Settings", "ZmqLinkLost", "ZmqTarget", "topic_prefix"]

MAX_BATCH = 1024
"""Messages taken from a socket per reader callback; then the loop gets a turn."""
LINGER_MS = 1000
"""How long closing a publisher may wait to flush what it queued; bounds a close."""
NODROP_WAIT_MS = 2
"""How long a ``--zmq-nodrop`` publisher at the high-water mark blocks in ``send`` for room
before it gives the worker's loop a turn. ZeroMQ wakes a blocked send the moment there is
room; sleeping on a timer instead idles the pipe for a whole millisecond tick."""

_NOBLOCK = zmq.NOBLOCK


class _Publisher(Publisher):
    def __init__(self, sock: zmq.Socket[bytes], proxy: str | None, nodrop: bool) -> None:
        self.sock = sock
        self.nodrop = nodrop
        self.prefixes: dict[str, bytes] = {}
        self.lost: str | None = None
        self.watch = LinkWatch(sock, self._lost) if proxy else None
        # The backend's send, without the Python wrapper's keyword handling: about a third
        # of the per-message cost of sending.
        self._send = super(zmq.Socket, sock).send

    def _lost(self, endpoint: str) -> None:
        self.lost = self.lost or f"lost the connection to the zmq forwarder at {endpoint}"

    def _prefix(self, topic: str) -> bytes:
        if self.lost:
            raise ZmqLinkLost(self.lost)
        prefix = self.prefixes.get(topic)
        if prefix is None:
            prefix = self.prefixes[topic] = topic_prefix(topic)
        return prefix

    async def publish(self, topic: str, payloads: Sequence[bytes]) -> None:
        """Queue every payload; at the high-water mark PUB drops, ``--zmq-nodrop`` waits."""
        prefix = self._prefix(topic)
        await self._send_all([prefix + p for p in payloads])

    async def publish_block(self, topic: str, block: bytes, count: int, size: int) -> None:
        """:meth:`publish` for payloads lying back to back: prefixed all at once with numpy."""
        prefix = self._prefix(topic)
        rows = np.empty((count, len(prefix) + size), np.uint8)
        rows[:, : len(prefix)] = np.frombuffer(prefix, np.uint8)
        rows[:, len(prefix) :] = np.frombuffer(block, np.uint8, count * size).reshape(count, size)
        data, step = rows.tobytes(), len(prefix) + size
        await self._send_all([data[i : i + step] for i in range(0, count * step, step)])

    async def _send_all(self, messages: list[bytes]) -> None:
        send = self._send
        if not self.nodrop:  # a PUB socket never says Again: it drops at the mark
            for m in messages:
                send(m, _NOBLOCK)
            return
        i, n = 0, len(messages)
        while i < n:
            try:
                while i < n:
                    send(messages[i], _NOBLOCK)
                    i += 1
            except zmq.Again:  # XPUB_NODROP at the mark: wait for room
                # An XPUB reports POLLOUT even when full (libzmq's distributor always claims
                # room), so there is no FD edge to await: block briefly in ZeroMQ instead
                # (SNDTIMEO is NODROP_WAIT_MS), then let the loop run.
                try:
                    send(messages[i], 0)
                    i += 1
                except zmq.Again:
                    if self.lost:
                        raise ZmqLinkLost(self.lost) from None
                    await asyncio.sleep(0)

    async def close(self) -> None:
        """Close, letting ZeroMQ flush for at most :data:`LINGER_MS`."""
        if self.watch is not None:
            self.watch.close()
        self.sock.close(linger=LINGER_MS)


class _Subscription(Subscription):
    def __init__(self, sock: zmq.Socket[bytes], cut: int | None, sink: Sink,
                 proxy: str | None) -> None:
        self.sock = sock
        self.sink = sink
        self.cut = cut
        self.closed = False
        self.loop = asyncio.get_running_loop()
        self.fd: int = sock.FD
        self.watch = LinkWatch(sock, self._lost) if proxy else None
        self.loop.add_reader(self.fd, self._drain)
        # A pipe that was never read from signals nothing: read once to arm the FD.
        self.loop.call_soon(self._drain)

    def _lost(self, endpoint: str) -> None:
        self.sink.disconnected(f"lost the connection to the zmq forwarder at {endpoint}")

    def _drain(self) -> None:
        if self.closed:
            return
        recv = self.sock.recv
        batch: list[bytes] = []
        append = batch.append
        cut = self.cut
        more = True
        try:
            if cut is not None:  # the sink skips the prefix itself: no copy per message
                for _ in range(MAX_BATCH):
                    append(recv(_NOBLOCK))
            else:  # topics of different lengths: read each message's length byte
                for _ in range(MAX_BATCH):
                    m = recv(_NOBLOCK)
                    append(m[m[0] + 1 :])
        except zmq.Again:
            # Edge-triggered FD: it will not fire again for messages already queued,
            # so ask ZeroMQ directly before waiting for the next edge.
            more = readable(self.sock)
        if batch:
            self.sink.deliver(batch, cut or 0)
        if more:
            self.loop.call_soon(self._drain)  # full batch: let the rest of the loop run first

    async def close(self) -> None:
        """Stop receiving and close the socket at once (nothing to flush)."""
        if self.closed:
            return
        self.closed = True
        if self.watch is not None:
            self.watch.close()
        self.loop.remove_reader(self.fd)
        self.sock.close(linger=0)


class _ZmqClient(Client):
    def __init__(self, endpoint: Mapping[str, JSON], settings: Settings) -> None:
        self.endpoint = endpoint
        self.settings = settings
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()

    def _socket(self, kind: int) -> zmq.Socket[bytes]:
        return configure(self.ctx.socket(kind), self.settings.hwm, self.settings.sockbuf)

    def _rpc(self, wanted: bool) -> None:
        mode = self.endpoint["mode"]
        if (mode in RPC_MODES) != wanted:
            raise TargetError(f"--zmq-mode {mode} does not carry this (see --zmq-mode)")

    async def requester(self, req_id: int, sink: Sink) -> Requester:
        """A REQ (reqrep) or DEALER (dealer, rpc-broker) socket per topic; see :mod:`.rpc`."""
        self._rpc(True)
        return rpc.open_requester(self.endpoint, self.settings, sink, self._socket)

    async def responder(self, resp_id: int, topics: Sequence[str],
                        service: Service) -> Subscription:
        """A REP (reqrep), ROUTER (dealer) or broker-side DEALER (rpc-broker) responder."""
        self._rpc(True)
        return rpc.open_responder(self.endpoint, resp_id, topics, service, self._socket)

    async def publisher(self, pub_id: int) -> Publisher:
        """A PUB socket bound to this publisher's address (mesh) or connected to the forwarder;
        in the task modes PUSH sockets (pipeline) or a DEALER to the broker."""
        self._rpc(False)
        mode = self.endpoint["mode"]
        if mode == "pipeline":
            return pipeline.open_publisher(self.endpoint, pub_id, self._socket)
        if mode == "broker":
            return brokered.open_publisher(self.endpoint, self._socket)
        nodrop = self.settings.nodrop
        sock = self._socket(zmq.XPUB if nodrop else zmq.PUB)
        if nodrop:
            sock.setsockopt(zmq.XPUB_NODROP, 1)
            sock.setsockopt(zmq.SNDTIMEO, NODROP_WAIT_MS)
        proxy: str | None = None
        try:
            if self.endpoint["mode"] == "mesh":
                addr = self.endpoint["pubs"][pub_id]
                sock.bind(addr)
            else:
                proxy = addr = self.endpoint["xsub"]
                sock.connect(addr)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            raise TargetError(f"publisher {pub_id} cannot use {addr}: {exc}") from None
        return _Publisher(sock, proxy, nodrop)

    async def subscribe(self, sub_id: int, topics: Sequence[str], sink: Sink,
                        group: str | None = None) -> Subscription:
        """Subscribe first, then connect to every publisher (or the forwarder); see module doc.

        In the task modes (``group`` given) a PULL (pipeline) or DEALER (broker) worker of
        its one topic."""
        self._rpc(False)
        mode = self.endpoint["mode"]
        if (group is not None) != (mode in TASK_MODES):
            raise TargetError(f"--zmq-mode {mode} cannot serve "
                              f"{'a shared group' if group else 'a broadcast subscriber'}")
        if mode in TASK_MODES:
            (topic,) = topics
            if mode == "pipeline":
                return pipeline.open_worker(self.endpoint, topic, sink, self._socket)
            return brokered.open_worker(self.endpoint, sub_id, topic, sink, self._socket,
                                        self.settings.credit)
        sock = self._socket(zmq.SUB)
        prefixes = [topic_prefix(t) for t in topics]
        for p in prefixes:
            sock.setsockopt(zmq.SUBSCRIBE, p)
        lengths = {len(p) for p in prefixes}
        cut = lengths.pop() if len(lengths) == 1 else None
        proxy: str | None = None
        if self.endpoint["mode"] == "mesh":
            for addr in self.endpoint["pubs"]:
                sock.connect(addr)
        else:
            proxy = self.endpoint["xpub"]
            sock.connect(proxy)
        return _Subscription(sock, cut, sink, proxy)

    async def close(self) -> None:
        """Close whatever is still open, then the context (bounded by the linger)."""
        self.ctx.destroy(linger=LINGER_MS)


class ZmqTarget(Target):
    """ZeroMQ: PUB/SUB (broadcast), PUSH/PULL or a load-balancing broker (tasks), REQ/REP,
    DEALER/ROUTER or a broker (rpc); see the module docstrings."""

    name = "zmq"
    description = ("ZeroMQ PUB/SUB: brokerless mesh (each publisher binds, subscribers connect "
                   "to all), or through an XSUB/XPUB forwarder; tasks: PUSH/PULL pipeline, "
                   "or a load-balancing ROUTER broker; rpc: REQ/REP, DEALER/ROUTER, or through "
                   "a ROUTER/DEALER broker")
    patterns = frozenset({Pattern.BROADCAST, Pattern.TASKS, Pattern.RPC})
    faults = ZMQ_FAULTS
    options = (
        TargetOption("--zmq-mode", "mesh: subscribers connect to every publisher; proxy: "
                     "everyone connects to an XSUB/XPUB forwarder process (both --pattern "
                     "broadcast); pipeline: publishers PUSH, workers PULL; broker: a "
                     "load-balancing ROUTER broker process (both --pattern tasks); reqrep: "
                     "REQ/REP lockstep; dealer: DEALER -> ROUTER, many in flight; rpc-broker: "
                     "through a ROUTER/DEALER broker process (all --pattern rpc); default: "
                     "mesh, pipeline, dealer by pattern", None, choices=MODES),
        TargetOption("--zmq-transport", "tcp (loopback) or ipc (Unix sockets in a private "
                     "temp dir)", "tcp", choices=TRANSPORTS),
        TargetOption("--hwm", "ZeroMQ high-water mark (SNDHWM/RCVHWM, messages; 0: no limit); "
                     "PUB drops beyond it", DEFAULT_HWM, kind="int"),
        TargetOption("--zmq-nodrop", "publishers wait at the high-water mark instead of "
                     "dropping (XPUB with ZMQ_XPUB_NODROP): backpressure", False, kind="flag"),
        TargetOption("--zmq-sockbuf", "kernel socket buffer size in bytes (ZMQ_SNDBUF/"
                     "ZMQ_RCVBUF); 0: the kernel's autotuned default, which on loopback can "
                     "queue far more than --hwm", 0, kind="int"),
        TargetOption("--zmq-proxy", "XSUB,XPUB addresses of a running forwarder to use "
                     "instead of starting one (with --zmq-mode proxy)", None),
        TargetOption("--zmq-credit", "with --zmq-mode broker: tasks a worker holds at most; "
                     "it asks for more as it finishes them (1: one at a time)", DEFAULT_CREDIT,
                     kind="int"),
        TargetOption("--zmq-req-timeout", "with --zmq-mode reqrep: milliseconds a REQ socket "
                     "waits for a reply before it sends its next request (the reply, if it "
                     "comes later, is dropped: a timeout)", DEFAULT_REQ_TIMEOUT_MS,
                     kind="int"),
    )

    variants = mode_variants(options, "--zmq-mode", {
        Pattern.BROADCAST: BROADCAST_MODES, Pattern.TASKS: TASK_MODES,
        Pattern.RPC: RPC_MODES})
    """mesh, pipeline and dealer by default; every other mode a design of its own."""

    def check(self) -> Availability:
        """pyzmq is a dependency; report the libzmq it carries."""
        return Availability(True, f"libzmq {zmq.zmq_version()} (pyzmq {zmq.__version__})")

    def validate(self, options: Mapping[str, JSON]) -> None:
        """Reject bad ``--zmq-*`` / ``--hwm`` values (see :meth:`Settings.parse`)."""
        Settings.parse(options)

    @contextlib.contextmanager
    def serve(self, spec: ServeSpec) -> Iterator[Endpoint]:
        """Pick the publishers' addresses (mesh, pipeline) or start the forwarder (proxy) or
        the broker (broker); a mode asked for the other pattern is one line (exit 2).

        Everything lives on loopback or in a private temp dir removed afterwards.
        """
        s = Settings.parse(spec.options).for_pattern(spec.pattern)
        for t in spec.topics:
            topic_prefix(t)
        info: dict[str, JSON] = {
            "libzmq": zmq.zmq_version(), "pyzmq": zmq.__version__, "mode": s.mode,
            "transport": s.transport, "hwm": s.hwm, "nodrop": s.nodrop, "sockbuf": s.sockbuf,
            "reconnect_ivl_ms": RECONNECT_IVL_MS, "linger_ms": LINGER_MS,
        }
        with tempfile.TemporaryDirectory(prefix="msgbench-zmq-") as tmp:
            work = Path(tmp)
            if s.mode in RPC_MODES:
                with rpc.serve(s, spec, work, info) as endpoint:
                    yield endpoint
            elif s.mode == "pipeline":
                topics = list(spec.topics)
                push = [[address(s.transport, work, f"push-{i}-{j}") for j in range(len(topics))]
                        for i in range(spec.pubs)]
                yield Endpoint({"mode": "pipeline", "topics": topics, "push": push}, (), info)
            elif s.mode == "broker":
                front = address(s.transport, work, "frontend")
                back = address(s.transport, work, "backend")
                info.update(broker="msgbench.targets.zmq.lbbroker", credit=s.credit,
                            frontend=front, backend=back)
                with broker(front, back, s.hwm, work, s.sockbuf) as pid:
                    yield Endpoint({"mode": "broker", "frontend": front, "backend": back},
                                   (ServerProcess("zmq-broker", pid),), info)
            elif s.mode == "mesh":
                pubs = [address(s.transport, work, f"pub-{i}") for i in range(spec.pubs)]
                yield Endpoint({"mode": "mesh", "pubs": pubs}, (), info)
            elif s.external is not None:
                xsub, xpub = s.external
                info.update(forwarder="external", xsub=xsub, xpub=xpub, transport="external")
                yield Endpoint({"mode": "proxy", "xsub": xsub, "xpub": xpub}, (), info)
            else:
                xsub = address(s.transport, work, "xsub")
                xpub = address(s.transport, work, "xpub")
                info.update(forwarder="msgbench.targets.zmq.proxy (zmq.proxy)")
                with forwarder(xsub, xpub, s.hwm, work, s.nodrop, s.sockbuf) as pid:
                    yield Endpoint({"mode": "proxy", "xsub": xsub, "xpub": xpub},
                                   (ServerProcess("zmq-proxy", pid),), info)

    def client(self, endpoint: Mapping[str, JSON], options: Mapping[str, JSON]) -> Client:
        """One ZeroMQ context per worker; sockets are made per publisher / subscriber."""
        return _ZmqClient(endpoint, Settings.parse(options))

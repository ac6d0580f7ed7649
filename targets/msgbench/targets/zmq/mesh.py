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

The PUB/SUB sockets themselves, and how they are drained, are :mod:`.pubsub`.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

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
from msgbench.targets.zmq import brokered, pipeline, pubsub, rpc
from msgbench.targets.zmq.faults import ZMQ_FAULTS
from msgbench.targets.zmq.lbbroker import broker
from msgbench.targets.zmq.proxy import forwarder
from msgbench.targets.zmq.pubsub import LINGER_MS
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
        return pubsub.open_publisher(self.endpoint, pub_id, self._socket, self.settings.nodrop)

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
        return pubsub.open_subscriber(self.endpoint, topics, sink, self._socket)

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

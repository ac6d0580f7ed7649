"""The ``zmq`` target's request/reply modes (``--pattern rpc``): addresses and dispatch.

* ``reqrep`` (:mod:`.reqrep`): REQ requesters, REP responders, lockstep;
* ``dealer`` (:mod:`.dealer`, the default): DEALER requesters, ROUTER responders, any
  number of requests in flight;
* ``rpc-broker`` (:mod:`.rpcbroker`): DEALER requesters to a ROUTER/DEALER broker
  process, DEALER responders behind it.

In the direct modes every responder binds its own address and a requester connects to
each responder of a topic. Which topic a responder serves is the driver's plan, which a
target does not see before ``responder`` is called (in another process): ``serve`` writes
down the driver's round-robin rule (responder ``i`` serves topic ``i % topics``) and
``responder`` refuses, in one line, a topic that does not match it, so a change of plan
fails loudly instead of sending requests to the wrong responders. Through the broker
there is one frontend / backend pair per topic and nothing to plan.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import zmq

from msgbench.api.target import (
    JSON,
    Endpoint,
    Requester,
    ServerProcess,
    ServeSpec,
    Service,
    Sink,
    Subscription,
    TargetError,
)
from msgbench.targets.zmq import dealer, reqrep
from msgbench.targets.zmq.rpcbroker import rpc_broker
from msgbench.targets.zmq.settings import Settings, address

SocketFactory = dealer.SocketFactory


@contextlib.contextmanager
def serve(s: Settings, spec: ServeSpec, work: Path, info: dict[str, JSON]
          ) -> Iterator[Endpoint]:
    """The responders' addresses (direct modes) or a running broker (``rpc-broker``)."""
    topics = list(spec.topics)
    if s.mode == "rpc-broker":
        pairs = [(address(s.transport, work, f"front-{i}"), address(s.transport, work,
                                                                     f"back-{i}"))
                 for i in range(len(topics))]
        info.update(broker=f"{__package__}.rpcbroker (zmq.proxy ROUTER/DEALER per topic)",
                    frontends=[f for f, _ in pairs], backends=[b for _, b in pairs])
        with rpc_broker(pairs, s.hwm, work, s.sockbuf) as pid:
            yield Endpoint({"mode": s.mode, "topics": topics,
                            "frontends": [f for f, _ in pairs],
                            "backends": [b for _, b in pairs]},
                           (ServerProcess("zmq-rpc-broker", pid),), info)
        return
    if s.mode == "reqrep":
        info.update(req_timeout_ms=s.req_timeout_ms)
    responders = [address(s.transport, work, f"resp-{i}") for i in range(spec.subs)]
    serves = [topics[i % len(topics)] for i in range(spec.subs)]
    yield Endpoint({"mode": s.mode, "topics": topics, "responders": responders,
                    "serves": serves}, (), info)


def _peers(endpoint: Mapping[str, JSON], topic: str) -> list[str]:
    if endpoint["mode"] == "rpc-broker":
        return [endpoint["frontends"][list(endpoint["topics"]).index(topic)]]
    return [a for a, t in zip(endpoint["responders"], endpoint["serves"], strict=True)
            if t == topic]


def open_requester(endpoint: Mapping[str, JSON], s: Settings, sink: Sink,
                   socket: SocketFactory) -> Requester:
    """Requester sockets for every topic, connected to its responders (or the broker)."""
    topics: Sequence[str] = endpoint["topics"]
    mode = endpoint["mode"]
    if mode == "reqrep":
        return reqrep.open_requester(topics, lambda t: _peers(endpoint, t), sink, socket,
                                     s.req_timeout_ms)
    return dealer.open_requester(topics, lambda t: _peers(endpoint, t), sink, socket,
                                 broker=mode == "rpc-broker")


def open_responder(endpoint: Mapping[str, JSON], resp_id: int, topics: Sequence[str],
                   service: Service, socket: SocketFactory) -> Subscription:
    """Responder ``resp_id`` of its one topic: bound (direct) or connected to the broker."""
    (topic,) = topics
    mode = endpoint["mode"]
    if mode == "rpc-broker":
        sock = socket(zmq.DEALER)
        # a lost broker is told by the requesters' link watch and the coordinator's
        # process watch; a responder has no one to tell
        sock.connect(endpoint["backends"][list(endpoint["topics"]).index(topic)])
        return dealer.RoutedResponder(sock, service)
    planned = endpoint["serves"][resp_id]
    if planned != topic:
        raise TargetError(f"zmq {mode}: responder {resp_id} was planned for topic "
                          f"{planned!r} but asked to serve {topic!r}")
    addr = endpoint["responders"][resp_id]
    if mode == "reqrep":
        return reqrep.open_responder(addr, service, socket)
    return dealer.open_responder(addr, service, socket)

"""How the zmq target breaks itself for the shared fault suite (:mod:`msgbench.api.faults`).

The mesh and the pipeline have no server to kill; the forwarder, the task broker and the rpc
broker each run as a process of their own. No ``unreachable`` case: a ZeroMQ socket connects
whenever its peer appears, so a missing forwarder is not an error ZeroMQ reports.
"""

from __future__ import annotations

from msgbench.api.faults import FaultPlan, ServerFault
from msgbench.targets.zmq import lbbroker, proxy, rpcbroker

ZMQ_FAULTS = FaultPlan(
    servers=(
        ServerFault("zmq-proxy", proxy.MODULE, "zmq-proxy",
                    ("--zmq-mode", "proxy")),
        ServerFault("zmq-broker", lbbroker.MODULE, "zmq-broker",
                    ("--zmq-mode", "broker"), "tasks"),
        ServerFault("zmq-rpc-broker", rpcbroker.MODULE, "zmq-rpc-broker",
                    ("--zmq-mode", "rpc-broker"), "rpc"),
    ),
    # reqrep: a REQ socket waits this long (ms) for a reply before moving on
    responder_runs=(("--zmq-mode", "reqrep", "--zmq-req-timeout", "300"),
                    ("--zmq-mode", "dealer"), ("--zmq-mode", "rpc-broker")),
)

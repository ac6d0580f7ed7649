"""All a target author imports: the target interface, its options and errors, and the
registry that finds targets by name. See :mod:`msgbench.api.target` for the contract."""

from msgbench.api.faults import FaultPlan, Login, ServerFault, Unreachable
from msgbench.api.target import (
    JSON,
    PAYLOAD_FIRST_BYTE_MAX,
    Availability,
    Capability,
    Client,
    Endpoint,
    Publisher,
    QueueDepth,
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

__all__ = [
    "JSON",
    "PAYLOAD_FIRST_BYTE_MAX",
    "Availability",
    "Capability",
    "Client",
    "Endpoint",
    "FaultPlan",
    "Login",
    "Publisher",
    "QueueDepth",
    "Requester",
    "ServeSpec",
    "ServerFault",
    "ServerProcess",
    "Service",
    "Sink",
    "Subscription",
    "Target",
    "TargetError",
    "TargetOption",
    "Unreachable",
]

"""All a target author imports: the target interface, its options and errors, and the
registry that finds targets by name. See :mod:`msgbench.api.target` for the contract."""

from msgbench.api.faults import FaultPlan, Login, ServerFault, Unreachable
from msgbench.api.target import (
    JSON,
    PAYLOAD_FIRST_BYTE_MAX,
    Availability,
    Client,
    Endpoint,
    Pattern,
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
    secret_env_name,
)
from msgbench.api.variants import Variant, mode_variants

__all__ = [
    "JSON",
    "PAYLOAD_FIRST_BYTE_MAX",
    "Availability",
    "Client",
    "Endpoint",
    "FaultPlan",
    "Login",
    "Pattern",
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
    "Variant",
    "mode_variants",
    "secret_env_name",
]

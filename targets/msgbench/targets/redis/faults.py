"""How the Redis targets break themselves for the shared fault suite (:mod:`msgbench.api.faults`).

All four run on one private redis-server (or a user's, by ``--redis-url``): no server behind
the URL, a wrong password, and that server killed or stopped mid-run are the same facts for
each; only the pattern a run of theirs carries differs.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import redis

from msgbench.api.faults import FaultPlan, Login, ServerFault, Unreachable
from msgbench.kit.redis_server import REDIS_URL_OPTION, private_server

URL_OPTION = REDIS_URL_OPTION.flag


@dataclass(frozen=True)
class ProtectedRedis:
    """A private redis-server that requires a password; ``url`` holds it."""

    url: str


@contextlib.contextmanager
def protected_server() -> Iterator[ProtectedRedis]:
    """Start a private redis-server on a free loopback port that requires a random password,
    and yield its URL with that password; stopped on exit."""
    password = secrets.token_urlsafe(12)
    with private_server() as server:
        client = redis.Redis.from_url(server.url)
        client.config_set("requirepass", password)  # after start: not visible in its argv
        client.close()
        yield ProtectedRedis(server.url.replace("redis://", f"redis://:{password}@", 1))


def redis_faults(pattern: str) -> FaultPlan:
    """The plan of a Redis target whose runs carry ``pattern``."""
    run = ("--pattern", pattern)
    return FaultPlan(
        Unreachable((*run, URL_OPTION, "redis://127.0.0.1:{port}"), "cannot reach Redis"),
        Login(URL_OPTION, protected_server, "refused the password", env=REDIS_URL_OPTION.env,
              args=run),
        (ServerFault("redis-server", "redis-server", "redis-server", pattern=pattern),),
        needs=("redis-server",))

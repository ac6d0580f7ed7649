"""How a target breaks itself: the facts the shared fault suite needs, declared by the target.

A target sets :attr:`Target.faults <msgbench.api.target.Target.faults>` to a :class:`FaultPlan`;
``tests/test_fault_contract.py`` runs every behaviour the plan declares against every
registered target, so a design gets the fault tests by declaring, not by copying them:

* :attr:`FaultPlan.unreachable`: the run's arguments when its server is not there (a closed
  loopback port): exit non-zero within seconds, one line naming what cannot be reached;
* :attr:`FaultPlan.needs` with :attr:`FaultPlan.unreachable`: with none of ``needs`` on PATH and
  no URL, one line saying to install it or to pass :attr:`Unreachable.option`;
* :attr:`FaultPlan.login`: a server of its kind that requires a password, and the option a run
  is pointed at it by: a wrong password is one line that prints no password;
* :attr:`FaultPlan.servers`: each server process a run has, how to recognise it among the
  run's descendants, and the role the result must blame when it is killed (``kill -9``) or
  stopped (``SIGSTOP``) mid-run: the run ends ``failed``, that role named, exact partial counts;
* :attr:`FaultPlan.responder_runs`: for a target with the ``rpc`` capability, the arguments of
  each variant whose responder is killed mid-run: timeouts counted exactly, the run ends.

Nothing here runs anything; it is data (and, for :class:`Login`, a context manager that
starts a protected server) that the suite reads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

PORT = "{port}"
"""Placeholder in :attr:`Unreachable.args` for a loopback port nothing listens on."""

PATTERNS = ("broadcast", "tasks", "rpc")
"""The values of ``--pattern`` a :class:`ServerFault` may name."""


class HasUrl(Protocol):
    """A running server that :attr:`Login.server` yields: its URL, with the right password."""

    @property
    def url(self) -> str:
        """The URL a run connects to (it holds the password: never print it)."""
        ...


@dataclass(frozen=True)
class Unreachable:
    """The run's arguments with no server reachable, and what its one error line says.

    ``args`` hold :data:`PORT` where a closed loopback port goes (``--redis-url
    redis://127.0.0.1:{port}``); ``says`` is text the error line must contain.
    """

    args: tuple[str, ...]
    says: str

    def argv(self, port: int) -> list[str]:
        """``args`` with :data:`PORT` replaced by ``port``."""
        return [a.replace(PORT, str(port)) for a in self.args]

    @property
    def option(self) -> str | None:
        """The option whose value holds :data:`PORT` (``--redis-url``), if one does."""
        at = next((i for i, a in enumerate(self.args) if PORT in a), 0)
        return self.args[at - 1] if at > 0 and self.args[at - 1].startswith("--") else None

    def without_server(self) -> list[str]:
        """``args`` without that option and its value: a run that must start its own."""
        at = next((i for i, a in enumerate(self.args) if PORT in a), None)
        return list(self.args) if at is None else [*self.args[: at - 1], *self.args[at + 1 :]]


@dataclass(frozen=True)
class Login:
    """A server that requires a password, and how a run is pointed at it.

    ``server()`` starts one (on loopback, a free port) and yields it; its ``url`` carries the
    right password in its userinfo (``scheme://user:password@host:port/...``). ``option`` is
    the run option that takes that URL, ``env`` the environment variable that may carry it
    instead (kept off the command line), ``args`` anything else such a run needs. A run with
    a wrong password must fail with one line containing ``refused``.

    ``reuse``: runs that do not kill the server (a killed responder) may use one such server
    for the whole session instead of starting a private one each (RabbitMQ takes seconds).
    """

    option: str
    server: Callable[[], AbstractContextManager[HasUrl]]
    refused: str
    env: str | None = None
    args: tuple[str, ...] = ()
    reuse: bool = False


@dataclass(frozen=True)
class ServerFault:
    """One server process of a run, to be killed or stopped mid-measurement.

    ``args`` start a run that has it (beyond ``-t NAME``); ``command`` recognises it among the
    run's descendants (see :meth:`matches`); ``role`` is the text of the process role the
    result's first reasons must name. ``pattern`` is the run's ``--pattern``.
    """

    id: str
    command: str
    role: str
    args: tuple[str, ...] = ()
    pattern: str = "broadcast"

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise ValueError(f"ServerFault {self.id!r}: pattern must be one of {PATTERNS}")

    def matches(self, cmdline: Sequence[str]) -> bool:
        """Whether a process with this command line is the server: ``command`` is one of its
        words, or the file name of one (``redis-server`` for ``/usr/bin/redis-server
        127.0.0.1:6379``, ``msgbench.targets.zmq.proxy`` for ``python -m ...``). Words, not
        substrings: a client's arguments that mention the server must not match."""
        words = " ".join(cmdline).split()
        return any(w == self.command or os.path.basename(w) == self.command for w in words)


@dataclass(frozen=True)
class FaultPlan:
    """Everything the fault suite may do to a target; an empty plan opts out of each part.

    ``needs``: executables the plan's runs need (``redis-server``); where one is missing the
    suite says so (and fails under CI) rather than reporting the target broken.
    """

    unreachable: Unreachable | None = None
    login: Login | None = None
    servers: tuple[ServerFault, ...] = ()
    responder_runs: tuple[tuple[str, ...], ...] = ((),)
    """One entry per rpc variant to kill a responder in (ignored without ``rpc``)."""
    needs: tuple[str, ...] = ()


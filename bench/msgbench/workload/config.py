"""The configuration of one run, and parsing of the values users type.

Every check that can fail on user input lives here and raises
:class:`ConfigError` with one line meant for the user.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from msgbench.api.target import Pattern
from msgbench.workload.envelope import HEADER_SIZE, REPLY_SIZE
from msgbench.workload.topology import Topology

DEFAULT_DURATION_S = 10.0
DEFAULT_WARMUP_S = 2.0
DEFAULT_SIZE = 64
DEFAULT_PROBE_TIMEOUT_S = 10.0
DEFAULT_DRAIN_TIMEOUT_S = 2.0
DEFAULT_RPC_TIMEOUT_S = 1.0
MAX_INFLIGHT = 1_000_000
MAX_CLIENTS = 10_000
MAX_TOPICS = 65_535  # the envelope's topic field is 16 bits
MAX_SIZE = 64 * 1024 * 1024
"""Largest message: Redis' own limit for a bulk string is 512 MB, but the publishers hold a
batch of them and the subscribers their backlog: more would be a test of swap."""
MAX_BATCH = 65_536
"""Most messages in one publish call."""
MAX_BATCH_BYTES = 1024 * 1024 * 1024
"""Most bytes one publish call may build (``--size`` times the messages per call)."""
MAX_RATE = 1e9
"""Messages/s per publisher: far beyond any transport, and still a finite schedule."""
MAX_DURATION_S = 24 * 3600.0
MAX_WARMUP_S = 3600.0
MAX_TIMEOUT_S = 3600.0
"""Longest --probe-timeout and --drain-timeout."""
MAX_SUB_DELAY_S = 1.0
"""Longest simulated processing time per message (it blocks a worker's loop)."""
MAX_PROCS = 256

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|h)?\s*$")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class ConfigError(ValueError):
    """Invalid user input; ``str(exc)`` is one line for the user."""


def parse_duration(text: str, what: str = "duration") -> float:
    """Parse ``500ms``, ``10s``, ``2m``, ``1.5h`` or a bare number of seconds into seconds."""
    match = _DURATION_RE.match(text)
    if not match:
        raise ConfigError(f"invalid {what} {text!r}: use a number with a unit, e.g. 500ms, 10s, 2m")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def parse_churn(text: str | None) -> tuple[float, float]:
    """Parse ``AWAY/PERIOD`` (``500ms/2s``) into seconds; None or ``none`` is no churn."""
    if text is None or text.strip().lower() in ("", "none", "0"):
        return 0.0, 0.0
    away, sep, period = text.partition("/")
    if not sep:
        raise ConfigError(f"invalid --churn {text!r}: use AWAY/PERIOD, e.g. 500ms/2s")
    return parse_duration(away, "--churn away time"), parse_duration(period, "--churn period")


def parse_rate(text: str) -> float | None:
    """Parse a per-publisher rate: a positive number (``10000``, ``50k``, ``1.5M``) or ``max``.

    Returns None for ``max`` (closed loop).
    """
    t = text.strip().lower()
    if t == "max":
        return None
    mult = 1.0
    if t and t[-1] in "km":
        mult = 1e3 if t[-1] == "k" else 1e6
        t = t[:-1]
    try:
        rate = float(t) * mult
    except ValueError:
        raise ConfigError(f"invalid rate {text!r}: use messages/s per publisher or 'max'") from None
    if not rate > 0 or rate != rate or rate == float("inf"):
        raise ConfigError(f"rate must be a positive number of messages/s, got {text!r}")
    return rate


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run; recorded verbatim in the result."""

    target: str = "inproc"
    pattern: str = Pattern.BROADCAST.value
    """``broadcast``, ``tasks`` or ``rpc`` (see :class:`~msgbench.workload.topology.Pattern`)."""
    pubs: int = 1
    subs: int = 1
    size: int = DEFAULT_SIZE
    rate: float | None = None
    """Messages per second per publisher; None is closed loop (``--rate max``)."""
    duration_s: float = DEFAULT_DURATION_S
    warmup_s: float = DEFAULT_WARMUP_S
    topics: int = 1
    procs: int | None = None
    batch: int = 0
    """Messages per publish call; 0 picks a default for the rate."""
    sub_delay_s: float = 0.0
    churn_away_s: float = 0.0
    churn_period_s: float = 0.0
    """Subscriber churn: each subscriber is away ``churn_away_s`` every ``churn_period_s``."""
    probe_timeout_s: float = DEFAULT_PROBE_TIMEOUT_S
    drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S
    target_options: Mapping[str, Any] = field(default_factory=dict)
    work: str = ""
    """Service time of a task (``tasks``): ``fixed:1ms``, ``exp:1ms``, ``lognormal:1ms,0.5``."""
    slow_worker: str = ""
    """``SUB:xFACTOR``: that subscriber's tasks take FACTOR times as long."""
    kill_worker_s: float | None = None
    """SIGKILL the first subscriber worker process this far into the measured window."""
    timeout_s: float = DEFAULT_RPC_TIMEOUT_S
    """Request/reply: a request with no reply this long after it left has timed out."""
    inflight: int = 0
    """Request/reply in closed loop: requests outstanding per requester (0: open loop)."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` when the run cannot make sense."""
        if self.pattern not in tuple(Pattern):
            raise ConfigError(f"unknown --pattern {self.pattern!r}: use "
                              + ", ".join(p.value for p in Pattern))
        if self.pubs < 1:
            raise ConfigError("--pubs must be at least 1")
        if self.subs < 1:
            raise ConfigError("--subs must be at least 1: with no subscriber nothing is measured")
        if self.pubs + self.subs > MAX_CLIENTS:
            raise ConfigError(f"at most {MAX_CLIENTS} clients in one run")
        if self.size < HEADER_SIZE:
            raise ConfigError(
                f"--size {self.size} B cannot hold the {HEADER_SIZE} B header msgbench needs"
            )
        if self.rate is not None and not self.rate > 0:
            raise ConfigError("--rate must be positive (or 'max')")
        if self.duration_s <= 0:
            raise ConfigError("--duration must be longer than zero")
        if self.warmup_s < 0:
            raise ConfigError("--warmup cannot be negative")
        if self.pattern == Pattern.RPC and self.size < REPLY_SIZE:
            raise ConfigError(f"--size {self.size} B cannot hold a reply: request/reply needs "
                              f"at least {REPLY_SIZE} B")
        if not 1 <= self.topics <= min(self.subs, MAX_TOPICS):
            raise ConfigError(
                f"--topics must be between 1 and the number of subscribers ({self.subs})"
            )
        if self.procs is not None and self.procs < 1:
            raise ConfigError("--procs must be at least 1")
        if self.batch < 0:
            raise ConfigError("--batch cannot be negative")
        if self.sub_delay_s < 0:
            raise ConfigError("--sub-delay cannot be negative")
        if self.churn_period_s and not 0 < self.churn_away_s < self.churn_period_s:
            raise ConfigError("--churn AWAY/PERIOD needs 0 < AWAY < PERIOD, e.g. 500ms/2s")
        self._check_bounds()
        self._validate_tasks()

    def _validate_tasks(self) -> None:
        from msgbench.workload.work import parse_slow_worker, parse_work  # imports this module

        if self.work and self.pattern == Pattern.BROADCAST:
            raise ConfigError("--work applies to --pattern tasks and rpc (for broadcast, "
                              "--sub-delay makes a slow subscriber)")
        if self.slow_worker and self.pattern != Pattern.TASKS:
            raise ConfigError("--slow-worker applies to --pattern tasks only")
        if self.kill_worker_s is not None and self.pattern == Pattern.BROADCAST:
            raise ConfigError("--kill-worker applies to --pattern tasks and rpc")
        if self.inflight and self.pattern != Pattern.RPC:
            raise ConfigError("--inflight applies to --pattern rpc only")
        if not 0 <= self.inflight <= MAX_INFLIGHT:
            raise ConfigError(f"--inflight must be between 1 and {MAX_INFLIGHT}")
        if self.inflight and self.rate is not None:
            raise ConfigError("--inflight is closed loop: use it with --rate max")
        if not 0 < self.timeout_s <= 3600:
            raise ConfigError("--timeout must be longer than zero and at most an hour")
        parse_work(self.work)
        slow = parse_slow_worker(self.slow_worker)
        if slow is not None and slow[0] >= self.subs:
            raise ConfigError(f"--slow-worker {slow[0]}: there are only {self.subs} subscribers")
        if self.kill_worker_s is not None and not 0 < self.kill_worker_s < self.duration_s:
            raise ConfigError("--kill-worker must fall inside the measured window "
                              f"(0 < AT < {self.duration_s:g} s)")

    def _check_bounds(self) -> None:
        """Upper bounds: beyond them a run would exhaust memory, overflow a C integer or
        never end, and say so only after minutes, if at all."""
        if self.size > MAX_SIZE:
            raise ConfigError(f"--size {self.size} B is more than the {_mib(MAX_SIZE)} "
                              "msgbench allows per message")
        if self.batch > MAX_BATCH:
            raise ConfigError(f"--batch {self.batch} is more than {MAX_BATCH} messages per call")
        if self.size * self.effective_batch() > MAX_BATCH_BYTES:
            raise ConfigError(
                f"--size {self.size} B x {self.effective_batch()} messages per publish call "
                f"is more than {_mib(MAX_BATCH_BYTES)}: lower --batch (e.g. --batch "
                f"{max(1, MAX_BATCH_BYTES // self.size)})")
        if self.rate is not None and self.rate > MAX_RATE:
            raise ConfigError(f"--rate {self.rate:g}/s is more than {MAX_RATE:g} per publisher")
        for value, flag, most in (
            (self.duration_s, "--duration", MAX_DURATION_S),
            (self.warmup_s, "--warmup", MAX_WARMUP_S),
            (self.probe_timeout_s, "--probe-timeout", MAX_TIMEOUT_S),
            (self.drain_timeout_s, "--drain-timeout", MAX_TIMEOUT_S),
            (self.sub_delay_s, "--sub-delay", MAX_SUB_DELAY_S),
            (self.churn_period_s, "--churn period", MAX_DURATION_S),
        ):
            if value > most:
                raise ConfigError(f"{flag} {value:g} s is longer than the {most:g} s allowed")
        if self.procs is not None and self.procs > MAX_PROCS:
            raise ConfigError(f"--procs {self.procs} is more than {MAX_PROCS} processes")

    def topic_names(self) -> tuple[str, ...]:
        """The topic (channel) names, ``t0`` .. ``t<n-1>``."""
        return tuple(f"t{i}" for i in range(self.topics))

    def topology(self) -> Topology:
        """Who listens to what and what is owed (see :mod:`msgbench.workload.topology`)."""
        return Topology(Pattern(self.pattern), self.pubs, self.subs, self.topics)

    def effective_batch(self) -> int:
        """Messages per publish call: the user's ``--batch`` or a default for the rate."""
        if self.batch:
            return self.batch
        return 128 if self.rate is None else 1024

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        d = asdict(self)
        d["target_options"] = dict(self.target_options)
        return d

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunConfig:
        """Rebuild a config from :meth:`to_json` output (one written before ``pattern``
        existed is a broadcast)."""
        return cls(**dict(data))


def _mib(n: int) -> str:
    return f"{n / 2**30:g} GiB" if n >= 2**30 else f"{n / 2**20:g} MiB"


def cpu_count() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1

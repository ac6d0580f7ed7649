"""The configuration of one run, and the ``msgbench run`` option that sets each field.

Every check that can fail on user input lives here or in :mod:`msgbench.workload.values`
(the parsers) and raises :class:`ConfigError` with one line meant for the user. Each
field declares its option in its metadata (see :mod:`msgbench.workload.run_options`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from msgbench.api.target import Pattern
from msgbench.workload.envelope import HEADER_SIZE, REPLY_SIZE
from msgbench.workload.run_options import check_patterns, internal, run_option
from msgbench.workload.topology import Topology
from msgbench.workload.values import (
    CHURN,
    DURATION,
    OPTIONAL_DURATION,
    OPTIONAL_TEXT,
    PROCS,
    RATE,
    WHOLE,
)

# re-exported: ConfigError is imported from here across the tree, and
# orchestration/sweep.py imports the two parsers from here too
from msgbench.workload.values import ConfigError as ConfigError
from msgbench.workload.values import parse_duration as parse_duration
from msgbench.workload.values import parse_rate as parse_rate
from msgbench.workload.work import parse_slow_worker, parse_work

DEFAULT_DURATION_S = 10.0
DEFAULT_WARMUP_S = 2.0
DEFAULT_SIZE = 64
DEFAULT_PROBE_TIMEOUT_S = 10.0
DEFAULT_DRAIN_TIMEOUT_S = 2.0
DEFAULT_STALL_TIMEOUT_S = 1.0
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
"""Longest --probe-timeout, --drain-timeout and --timeout."""
MAX_SUB_DELAY_S = 1.0
"""Longest simulated processing time per message (it blocks a worker's loop)."""
MAX_PROCS = 256


def _mib(n: int) -> str:
    return f"{n / 2**30:g} GiB" if n >= 2**30 else f"{n / 2**20:g} MiB"

@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run; recorded verbatim in the result."""

    target: str = field(default="inproc", metadata=run_option(
        flag="--target", short="-t", help="Design under test (see `msgbench targets`).",
        details="`msgbench targets` lists them, whether each can run here and what it needs "
        "if not."))
    pattern: str = field(default=Pattern.BROADCAST.value, metadata=run_option(
        flag="--pattern", choices=tuple(p.value for p in Pattern),
        help="broadcast: every message to every subscriber of its topic; tasks: competing "
        "consumers, each message to one subscriber of its topic's group; rpc: publishers "
        "are requesters, subscribers answer them.",
        details="What is owed: see [patterns](patterns.md). A target that does not carry the "
        "pattern is one line and exit 2."))
    """``broadcast``, ``tasks`` or ``rpc`` (see :class:`~msgbench.workload.topology.Pattern`)."""
    pubs: int = field(default=1, metadata=run_option(
        flag="--pubs", short="-p", kind=WHOLE, help="Publishers (producers, requesters)."))
    subs: int = field(default=1, metadata=run_option(
        flag="--subs", short="-s", kind=WHOLE,
        help="Subscribers (workers of a group, responders)."))
    size: int = field(default=DEFAULT_SIZE, metadata=run_option(
        flag="--size", kind=WHOLE, help="Message size in bytes, header included.",
        details=f"At least the {HEADER_SIZE}-byte header msgbench puts in every message "
        f"(for rpc {REPLY_SIZE}, to hold a reply), at most {MAX_SIZE // 2**20} MiB."))
    rate: float | None = field(default=None, metadata=run_option(
        flag="--rate", short="-r", kind=RATE,
        help="Messages/s per publisher (10000, 50k, 1M) or 'max' for closed loop.",
        details=f"At most {MAX_RATE:,.0f}/s."))
    """Messages per second per publisher; None is closed loop (``--rate max``)."""
    duration_s: float = field(default=DEFAULT_DURATION_S, metadata=run_option(
        flag="--duration", short="-d", kind=DURATION, help="Measured time: 500ms, 10s, 2m.",
        details=f"At most {MAX_DURATION_S / 3600:g} h."))
    warmup_s: float = field(default=DEFAULT_WARMUP_S, metadata=run_option(
        flag="--warmup", short="-w", kind=DURATION,
        help="Unmeasured time before the measurement.",
        details=f"At most {MAX_WARMUP_S / 3600:g} h."))
    topics: int = field(default=1, metadata=run_option(
        flag="--topics", kind=WHOLE,
        help="Topics (channels); subscribers spread over them round-robin.",
        details="Subscriber *i* listens to topic *i mod topics*; each publisher sends to the "
        "topics in turn. At most the number of subscribers."))
    procs: int | None = field(default=None, metadata=run_option(
        flag="--procs", kind=PROCS, help="Worker processes the clients are grouped into.",
        details="`auto`: one per core, publishers and subscribers apart (the `inproc` target "
        f"always uses one). At most {MAX_PROCS}."))
    batch: int = field(default=0, metadata=run_option(
        flag="--batch", kind=WHOLE,
        help="Messages per publish call (0: 128 in closed loop, else all due).",
        details=f"At most {MAX_BATCH}, and `--size` times the messages per call at most "
        f"{_mib(MAX_BATCH_BYTES)}."))
    """Messages per publish call; 0 picks a default for the rate."""
    sub_delay_s: float = field(default=0.0, metadata=run_option(
        flag="--sub-delay", kind=DURATION,
        help="Simulated processing time per received message (a slow subscriber).",
        details="It blocks its worker's loop, so the transport backs up as behind a real slow "
        f"consumer. At most {MAX_SUB_DELAY_S:g} s."))
    churn_away_s: float = field(default=0.0, metadata=run_option(
        flag="--churn", kind=CHURN, also=("churn_period_s",), metavar="AWAY/PERIOD",
        help="Subscriber churn AWAY/PERIOD (500ms/2s): each subscriber disconnects for AWAY "
        "every PERIOD, staggered.",
        details="A subscriber closes its subscription while away and subscribes again with "
        "the same id. What a plain pub/sub "
        "target loses meanwhile is reported as `lost_during_churn`, apart from loss while "
        "connected; a durable target resumes and loses nothing, its catch-up shows in the "
        "latency tail and the per-second `backlog`. The period is at most "
        f"{MAX_DURATION_S / 3600:g} h."))
    churn_period_s: float = 0.0
    """Subscriber churn: each subscriber is away ``churn_away_s`` every ``churn_period_s``."""
    probe_timeout_s: float = field(default=DEFAULT_PROBE_TIMEOUT_S, metadata=run_option(
        flag="--probe-timeout", kind=DURATION,
        help="Give up when subscribers cannot hear publishers.",
        details="The run fails when by then not every subscriber has heard every publisher "
        f"(naming the pairs); at most {MAX_TIMEOUT_S / 3600:g} h."))
    drain_timeout_s: float = field(default=DEFAULT_DRAIN_TIMEOUT_S, metadata=run_option(
        flag="--drain-timeout", kind=DURATION,
        help="Quiet time after which undelivered is lost.",
        details="Counted once publishing has ended; at most "
        f"{MAX_TIMEOUT_S / 3600:g} h."))
    stall_timeout_s: float = field(default=DEFAULT_STALL_TIMEOUT_S, metadata=run_option(
        flag="--stall-timeout", kind=DURATION,
        help="Fail when nothing arrives this long while messages are owed; 0s: never.",
        details="The progress watchdog, for every server whatever started it (one given by "
        "URL cannot be watched by its pid): in the measured window, nothing received by any "
        "subscriber for this long while one listens and the publishers send or are due to "
        "ends the run as failed, naming the server and when it stopped. At least three times "
        "the longest a subscriber spends on one message (`--work`, `--sub-delay`); at most "
        f"{MAX_TIMEOUT_S / 3600:g} h."))
    target_options: Mapping[str, Any] = field(default_factory=dict, metadata=internal(
        "each target's own options (declared by the targets, cli/target_options.py)"))
    work: str = field(default="", metadata=run_option(
        flag="--work", kind=OPTIONAL_TEXT, patterns=(Pattern.TASKS, Pattern.RPC),
        hint="(for broadcast, --sub-delay makes a slow subscriber)",
        help="service time of each task: fixed:1ms, exp:1ms (exponential, that mean) or "
        "lognormal:1ms,0.5 (that mean and sigma).",
        details="For rpc, the responder's time per request. A member does its tasks one after "
        "another and the target acknowledges a task only once its work is done."))
    """Service time of a task (``tasks``): ``fixed:1ms``, ``exp:1ms``, ``lognormal:1ms,0.5``."""
    slow_worker: str = field(default="", metadata=run_option(
        flag="--slow-worker", kind=OPTIONAL_TEXT, patterns=(Pattern.TASKS,),
        help="SUB:xFACTOR (0:x10): that subscriber's tasks take FACTOR times as long."))
    """``SUB:xFACTOR``: that subscriber's tasks take FACTOR times as long."""
    kill_worker_s: float | None = field(default=None, metadata=run_option(
        flag="--kill-worker", kind=OPTIONAL_DURATION, patterns=(Pattern.TASKS, Pattern.RPC),
        help="SIGKILL the first subscriber worker process AT (2s) into the measured "
        "window; a reliable design delivers its unfinished tasks again.",
        details="It sends its totals first; the run goes on. The tasks a reliable design "
        "delivers again count as `redelivered` (lost 0); an at-most-once design "
        "loses them (counted exactly; `orphaned` is what the killed members held). Needs "
        "two or more subscriber workers. Give `--drain-timeout` time for the design's "
        "redelivery (claim idle, reaper period)."))
    """SIGKILL the first subscriber worker process this far into the measured window."""
    timeout_s: float = field(default=DEFAULT_RPC_TIMEOUT_S, metadata=run_option(
        flag="--timeout", kind=DURATION, patterns=(Pattern.RPC,), strict=False,
        help="a request with no reply this long after it left has timed out.",
        details="A reply after that is `late` (still matched), and `timeouts = expected - "
        f"(delivered - late)`. At most {MAX_TIMEOUT_S / 3600:g} h."))
    """Request/reply: a request with no reply this long after it left has timed out."""
    inflight: int = field(default=0, metadata=run_option(
        flag="--inflight", kind=WHOLE, patterns=(Pattern.RPC,),
        help="with --rate max: closed loop with N requests outstanding per requester "
        "(0: open loop, unbounded).",
        details="Labelled closed loop in the result."))
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
        check_patterns(self)
        if not 0 <= self.inflight <= MAX_INFLIGHT:
            raise ConfigError(f"--inflight must be between 1 and {MAX_INFLIGHT}")
        if self.inflight and self.rate is not None:
            raise ConfigError("--inflight is closed loop: use it with --rate max")
        if not 0 < self.timeout_s <= MAX_TIMEOUT_S:
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
            (self.stall_timeout_s, "--stall-timeout", MAX_TIMEOUT_S),
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



def cpu_count() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1

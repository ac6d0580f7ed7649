"""The progress watchdog: a run whose messages stop arriving ends, named, within seconds.

A server msgbench started is watched by its pid (:mod:`msgbench.run.watch`); one given by
URL (``--redis-url``, ``--amqp-url``) cannot be, and a live server can stop forwarding
too (a dropped connection, a proxy that holds everything). So the workers report, every
:data:`FLOW_INTERVAL_S` of the measured window, how many messages their publishers handed
to the target and how many their subscribers received or finished (:class:`Flow`), and
this watch asks: has nothing arrived anywhere for the stall interval, while someone was
listening and messages were owed? Owed means the publishers kept sending in that span, or
were due to (a fixed rate, or closed loop, where a publisher blocked on the server sends
nothing). Slow is not stalled: one arrival anywhere keeps the run going.

Silence is measured on the workers' own report times, not on when the reports come in: a
worker starved of CPU reports late, and that is the pool's heartbeat's business, not a
stall of the server.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from msgbench.api.target import Endpoint
from msgbench.kit.urls import mask_url
from msgbench.run.control import Flow
from msgbench.workload.config import RunConfig
from msgbench.workload.work import parse_slow_worker, parse_work

if TYPE_CHECKING:  # the workers import this module for FLOW_INTERVAL_S; the pool is not theirs
    from msgbench.run.pool import WorkerHandle

NS = 1_000_000_000
FLOW_INTERVAL_S = 0.1
"""How often a worker sends its :class:`Flow` counts during the measured window."""
WORK_FACTOR = 3.0
"""A stall interval is at least this many times the longest a subscriber may spend on one
message (``--work``, ``--sub-delay``, a slow worker's factor): a worker busy with its task
receives nothing, and that is slow, not stalled."""


@dataclass(frozen=True)
class Stall:
    """What the watch found: nothing arrived from ``since_ns`` for ``silent_s`` seconds."""

    since_ns: int
    silent_s: float
    listening: int
    sent_meanwhile: int

    def describe(self, measure_start_ns: int) -> str:
        """One line without the server's name: the coordinator adds who it is."""
        at = (self.since_ns - measure_start_ns) / NS
        owed = (f"{self.sent_meanwhile:,} messages were sent meanwhile" if self.sent_meanwhile
                else "the publishers could send nothing more")
        return (f"nothing arrived for {self.silent_s:.1f} s from {max(at, 0.0):.1f} s into the "
                f"measurement, while {self.listening} subscriptions listened and {owed}")


class StallWatch:
    """Fed each worker's :class:`Flow`; :meth:`check` says whether the run has stalled.

    ``subscriber_workers``: the workers whose arrivals are counted (each must have reported
    past the silent span before a stall is declared). ``due``: messages
    are due all the time (closed loop, or a rate of at least one message per stall
    interval), so publishers that send nothing are blocked, not idle.
    """

    def __init__(self, stall_s: float, subscriber_workers: frozenset[int], due: bool,
                 start_ns: int) -> None:
        self.stall_ns = int(stall_s * NS)
        self.subscriber_workers = subscriber_workers
        self.due = due
        self._latest: dict[int, Flow] = {}
        self._arrived = 0
        self._sent_at_change = 0
        self._changed_ns = start_ns

    def feed(self, flow: Flow) -> None:
        """Take one worker's counts (cumulative, so a lost or late one costs nothing)."""
        seen = self._latest.get(flow.worker)
        if seen is not None and seen.at_ns >= flow.at_ns:
            return
        self._latest[flow.worker] = flow
        arrived = sum(f.arrived for f in self._latest.values())
        if arrived > self._arrived:
            self._arrived = arrived
            self._changed_ns = flow.at_ns
            self._sent_at_change = self._sent()

    def _sent(self) -> int:
        return sum(f.sent for f in self._latest.values())

    def check(self) -> Stall | None:
        """The stall, once every subscriber worker has reported a silent stall interval
        with someone listening and messages owed; else None."""
        if not self.subscriber_workers or not self.subscriber_workers <= set(self._latest):
            return None
        heard_until = min(self._latest[w].at_ns for w in self.subscriber_workers)
        silent = heard_until - self._changed_ns
        if silent < self.stall_ns:
            return None
        listening = sum(self._latest[w].listening for w in self.subscriber_workers)
        sent = self._sent() - self._sent_at_change
        if listening == 0 or not (sent > 0 or self.due):
            return None
        return Stall(self._changed_ns, silent / NS, listening, sent)


def stall_interval_s(stall_s: float, longest_per_message_s: float) -> float:
    """The interval a run uses: ``stall_s``, or :data:`WORK_FACTOR` times the longest a
    subscriber may spend on one message, whichever is longer."""
    return max(stall_s, WORK_FACTOR * longest_per_message_s)


def stall_watch(cfg: RunConfig, workers: Sequence[WorkerHandle],
                start_ns: int) -> StallWatch | None:
    """The run's watch, or None with ``--stall-timeout 0s``: its interval covers the longest
    a subscriber may spend on one message, every worker is heard, and
    messages are due all the time in closed loop or at a rate of one per interval or more."""
    if cfg.stall_timeout_s <= 0:
        return None
    slow = parse_slow_worker(cfg.slow_worker)
    longest = max(cfg.sub_delay_s, parse_work(cfg.work).mean_s * (slow[1] if slow else 1.0))
    interval = stall_interval_s(cfg.stall_timeout_s, longest)
    due = cfg.rate is None or cfg.rate * interval >= 1.0
    # every worker: an rpc run's replies arrive at its requesters, in publisher workers
    return StallWatch(interval, frozenset(w.spec.worker for w in workers), due, start_ns)


def server_named(endpoint: Endpoint, target: str) -> str:
    """Who a stall is blamed on: the server processes the target started (by role and
    pid) and where they listen, or the server at the URL the user gave (masked), else the
    target's servers."""
    url = endpoint.info.get("url")
    where = f" at {mask_url(str(url))}" if url else ""
    if endpoint.processes:
        return ", ".join(f"{p.role} (pid {p.pid})" for p in endpoint.processes) + where
    return f"the server{where}" if where else f"{target}'s server"

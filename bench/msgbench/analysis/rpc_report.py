"""Tables of request/reply runs (``--pattern rpc``): rate, the reply ledger, round trips.

One row per run for throughput and the ledger (requests sent, replies matched, timeouts,
late, orphan, misrouted and duplicate replies), one row per run for the round trip (from
the intended send and from the actual send) and its three legs (request leg, time in the
responder, reply leg), and one row per responder for its share of the answers when the
file records them. A closed-loop run (``--inflight N``) says so in its ``loop`` column:
its latency is measured under saturation, not at an offered rate.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from msgbench.analysis.labels import format_rate
from msgbench.analysis.sections import Section, csv_cell, pct, spread, whole
from msgbench.analysis.task_report import cut_limit, pattern_variant, status_text
from msgbench.analysis.units import format_count
from msgbench.results.model import RunResult
from msgbench.results.records import RPC_LEGS, RPC_REPLY_LEG, RPC_REQUEST_LEG, RPC_SERVICE

LEGS = RPC_LEGS
"""The legs of a round trip, in order (:data:`~msgbench.results.records.RPC_LEGS`)."""
LEG_NAMES = {RPC_REQUEST_LEG: "request leg", RPC_SERVICE: "service",
             RPC_REPLY_LEG: "reply leg"}
OPEN_LOOP = "open-loop"


def loop_text(r: RunResult) -> str:
    """``open loop`` or ``closed, inflight 4`` (the result's ``latency_mode``)."""
    if r.latency_mode == OPEN_LOOP:
        return "open loop"
    inflight = r.config.get("inflight")
    return f"closed, inflight {inflight}" if inflight else "closed loop"


@dataclass(frozen=True)
class RpcRow:
    """One request/reply run's headline figures (ns; None: not in the file)."""

    name: str
    target: str
    variant: str
    requesters: int
    responders: int
    rate: float | None
    loop: str
    timeout_s: float | None
    status: str
    partial: bool
    reasons: tuple[str, ...]
    limit: str
    requests_per_s: float
    """Requests whose reply was matched inside the measured window, per second of it."""
    requests_per_cpu_s: float
    sent: int
    matched: int
    timeouts: int
    late: int
    orphan_replies: int
    misrouted: int
    duplicated: int
    errors: int
    """What came back that was no reply at all."""
    round_trip: tuple[int | None, ...]
    """From the intended send: p50, p99, p99.9, max."""
    from_actual: tuple[int | None, ...]
    """From the actual send: p50, p99, p99.9."""
    legs: tuple[int | None, ...]
    """p50 and p99 of each of :data:`LEGS`, in that order."""

    @classmethod
    def from_result(cls, path: Path | str, r: RunResult) -> RpcRow:
        """The row of a request/reply run's result document."""
        cfg, s, n = r.config, r.summary, r.summary.counters
        lat, raw = s.latency_ns, s.latency_uncorrected_ns
        return cls(
            name=Path(path).name, target=cfg["target"], variant=pattern_variant(cfg),
            requesters=cfg["pubs"], responders=cfg["subs"], rate=cfg["rate"],
            loop=loop_text(r), timeout_s=cfg.get("timeout_s"), status=r.status,
            partial=r.partial, reasons=tuple(r.reasons), limit=r.limits[0] if r.limits else "",
            requests_per_s=s.deliveries_per_s, requests_per_cpu_s=s.msgs_per_cpu_s,
            sent=n.published, matched=n.delivered, timeouts=n.timeouts, late=n.late,
            orphan_replies=n.orphan_replies, misrouted=n.misrouted, duplicated=n.duplicated,
            errors=n.errors, round_trip=tuple(pct(lat, k) for k in ("p50", "p99", "p999", "max")),
            from_actual=tuple(pct(raw, k) for k in ("p50", "p99", "p999")),
            legs=tuple(pct(r.legs.get(leg), k) for leg in LEGS for k in ("p50", "p99")),
        )


def responder_shares(r: RunResult) -> list[tuple[int, int, float]]:
    """(responder, requests answered, share of all answers) from the subscribers the file
    lists with role ``responder``; empty when it lists none. Answers include the warm-up's
    (the responder counts every request it answered)."""
    rows = [(int(s.get("sub", i)), int(s["answered"])) for i, s in enumerate(r.subscribers)
            if s.get("role") == "responder" and "answered" in s]
    total = sum(a for _, a in rows)
    return [(sub, a, a / total if total else 0.0) for sub, a in rows]


RUN_HEADERS = (
    "target", "variant", "req x resp", "rate", "loop", "requests/s",
    "requests/CPU-s", "sent", "matched", "timeouts", "late", "orphan", "misrouted",
    "dup", "errors", "status", "first limit",
)
LATENCY_HEADERS = (
    "target", "variant", "req x resp", "loop", "round trip p50 / p99 / p99.9 / max",
    "from actual send p50 / p99 / p99.9", *(f"{LEG_NAMES[leg]} p50 / p99" for leg in LEGS),
)
RESPONDER_HEADERS = ("run", "file", "responder", "answered", "share")


def sections(runs: Sequence[tuple[Path | str, RunResult]], reason_chars: int) -> list[Section]:
    """The tables of these request/reply runs (responders only when some file lists them)."""
    rows = [RpcRow.from_result(p, r) for p, r in runs]
    classes = tuple(r.status for r in rows)
    body = tuple((
        r.target, r.variant, f"{r.requesters} x {r.responders}", format_rate(r.rate), r.loop,
        format_count(r.requests_per_s), format_count(r.requests_per_cpu_s), whole(r.sent),
        whole(r.matched), whole(r.timeouts), whole(r.late), whole(r.orphan_replies),
        whole(r.misrouted), whole(r.duplicated), whole(r.errors),
        status_text(r.status, r.partial, r.reasons, reason_chars), cut_limit(r.limit, reason_chars),
    ) for r in rows)
    latency = tuple((
        r.target, r.variant, f"{r.requesters} x {r.responders}", r.loop,
        spread(r.round_trip), spread(r.from_actual),
        *(spread(r.legs[i:i + 2]) for i in range(0, len(r.legs), 2)),
    ) for r in rows)
    out = [
        Section("request/reply", RUN_HEADERS, frozenset((3, *range(5, 14))), body, classes),
        Section("round trip (from the intended send) and its legs", LATENCY_HEADERS,
                frozenset(range(4, len(LATENCY_HEADERS))), latency, classes),
    ]
    shares = [(p, r, s) for p, r in runs for s in responder_shares(r)]
    if shares:
        out.append(Section("responders", RESPONDER_HEADERS, frozenset(range(2, 5)), tuple((
            " ".join(x for x in (r.config["target"], pattern_variant(r.config)) if x),
            Path(p).name, str(sub), whole(answered), f"{share:.1%}",
        ) for p, r, (sub, answered, share) in shares), tuple(r.status for _, r, _ in shares)))
    return out


CSV_HEADERS = (
    "file", "target", "variant", "requesters", "responders", "rate", "latency_mode",
    "inflight", "timeout_s", "requests_per_s", "requests_per_cpu_s", "sent", "matched",
    "timeouts", "late", "orphan_replies", "misrouted", "duplicated", "errors",
    "round_trip_p50_ns",
    "round_trip_p99_ns", "round_trip_p999_ns", "round_trip_max_ns", "from_actual_p50_ns",
    "from_actual_p99_ns", "from_actual_p999_ns",
    *(f"{leg.removeprefix('rpc_')}_{k}_ns" for leg in LEGS for k in ("p50", "p99")),
    "responder_answered", "status", "partial", "limit", "reasons",
)


def render_csv(runs: Sequence[tuple[Path | str, RunResult]]) -> str:
    """CSV of request/reply runs with raw numbers (latencies in ns); responders' answer
    counts space-separated."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADERS)
    for p, res in runs:
        r = RpcRow.from_result(p, res)
        w.writerow([csv_cell(v) for v in (
            r.name, r.target, r.variant, r.requesters, r.responders,
            "max" if r.rate is None else r.rate, res.latency_mode, res.config.get("inflight"),
            r.timeout_s, r.requests_per_s, r.requests_per_cpu_s, r.sent, r.matched,
            r.timeouts, r.late, r.orphan_replies, r.misrouted, r.duplicated, r.errors,
            *r.round_trip,
            *r.from_actual, *r.legs, [a for _, a, _ in responder_shares(res)] or None,
            r.status, r.partial, r.limit, "; ".join(r.reasons),
        )])
    return buf.getvalue()

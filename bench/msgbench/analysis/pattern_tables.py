"""The published task and request/reply sections: tables and takeaways from stored results.

``scripts/publish_results.py`` measures, this module only reads: capacity searches of
``--pattern tasks`` / ``--pattern rpc`` and single runs (the fairness runs with a slow
worker, the request/reply runs with one call in flight) become Markdown lines, each table
led by a one-line takeaway computed from the data. Design names are the target and the
target options that set it apart (``zmq mode=broker``), as in the broadcast tables; the
pattern and the workload are in the section's title, not in every row.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from msgbench.analysis.broadcast_tables import machine_line
from msgbench.analysis.capacity_table import CapacityRow, load_documents
from msgbench.analysis.palette import design_name, design_of
from msgbench.analysis.rpc_report import RpcRow
from msgbench.analysis.sections import md_table, ns, ratio, seconds, whole
from msgbench.analysis.task_report import TaskRow, cut_limit, member_rows
from msgbench.analysis.units import format_count, format_ns
from msgbench.results.capacity import CapacityResult
from msgbench.results.model import RunResult

TASK_REFERENCE = "redis-streams"
"""Task takeaways compare with this design (the Redis job queue with acknowledgements)."""
RPC_REFERENCE = "redis-rpc"
"""Request/reply takeaways compare with this design (Redis, replies on the requester's list)."""
LIMIT_CHARS = 100
"""A limit longer than this is cut in a table cell (the stored file has all of it)."""
SKIPPED_FILE = "skipped.txt"
"""In a section's directory: one ``design: reason`` line per design that did not run."""


def capacity_design(cap: CapacityResult) -> str:
    """The design a task or rpc capacity search measured, without the pattern's name (its
    target flags as given when no step left a result: the variant comes from a run's
    config)."""
    w = cap.workload
    if not cap.environment:
        return str(w["target"])
    target = str(w.get("target_name") or w["target"]).split()[0]
    text = str(w.get("variant", "")).removeprefix(str(w.get("pattern", ""))).strip()
    return design_name(target, text)


def _bound(row: CapacityRow) -> str:
    return "" if not row.degraded or row.capacity is None else ">= "


def _opt(value: float | None, fmt: str = "count") -> str:
    if value is None:
        return "-"
    return format_count(value) if fmt == "count" else format_ns(value)


def capacity_lines(caps: Sequence[tuple[Path, CapacityResult]], unit: str,
                   reference: str) -> list[str]:
    """Takeaway and table of task or rpc capacity searches; ``unit`` is ``tasks`` or
    ``requests`` (what the rate counts)."""
    rows = sorted(((capacity_design(c), CapacityRow.from_result(p, c)) for p, c in caps),
                  key=lambda x: x[0])
    headers = ("design", f"capacity {unit}/s", "p50 at 50 %", "p99 at 50 %",
               f"{unit}/CPU-s", "limit", "search")
    body = [[name, _bound(r) + _opt(r.capacity), _opt(r.half_p50_ns, "ns"),
             _opt(r.half_p99_ns, "ns"), _opt(r.msgs_per_cpu_s), cut_limit(r.limit, LIMIT_CHARS),
             f"{r.stopped}, {r.steps} steps"] for name, r in rows]
    return [capacity_takeaway(rows, unit, reference), "",
            md_table(headers, frozenset(range(1, 5)), body).rstrip()]


def capacity_takeaway(rows: Sequence[tuple[str, CapacityRow]], unit: str,
                      reference: str) -> str:
    """``Highest capacity: **zmq mode=broker** (12 k tasks/s), 2.1 times redis-streams.
    Cheapest per task: ...``, from the rows."""
    found = [(n, r) for n, r in rows if r.capacity]
    if not found:
        return "No design sustained any rate within the SLO here."
    name, best = max(found, key=lambda x: x[1].capacity or 0.0)
    text = (f"Highest capacity: **{name}** ({_bound(best)}{format_count(best.capacity or 0)} "
            f"{unit}/s)")
    ref = next((r for n, r in found if n == reference), None)
    if ref is not None and ref is not best and ref.capacity:
        text += (f", {(best.capacity or 0) / ref.capacity:.1f} times {reference} "
                 f"({_bound(ref)}{format_count(ref.capacity)})")
    if any(r.degraded for _, r in found):
        text += " (`>=`: the search's budget ran out first, so a lower bound)"
    cheap = [(n, r.msgs_per_cpu_s) for n, r in found if r.msgs_per_cpu_s]
    if cheap:
        n, per = max(cheap, key=lambda x: x[1] or 0.0)
        text += (f". Cheapest per {unit.removesuffix('s')}: **{n}** "
                 f"({format_count(per or 0)} {unit}/CPU-s)")
    return text + "."


def _shares(path: Path, r: RunResult) -> str:
    members = member_rows(path, r)
    return " / ".join(f"{m.share:.0%}" for m in members) if members else "-"


def _busy(r: RunResult) -> float | None:
    """Mean utilisation of the workers (busy over the measured time): the efficiency."""
    values = [float(u) for g in r.groups.values() for u in (g.get("utilisation") or [])
              if isinstance(u, int | float)]
    return sum(values) / len(values) if values else None


def fairness_lines(runs: Sequence[tuple[Path, RunResult]]) -> list[str]:
    """Takeaway and table of the task runs with a slow worker: shares, Jain, max/min, mean
    busy share, idle-with-backlog seconds, completion p50 / p99, lost and redelivered."""
    rows = sorted(((design_of(r.config), p, r, TaskRow.from_result(p, r)) for p, r in runs),
                  key=lambda x: x[0])
    headers = ("design", "tasks/s", "shares (worker 0 first)", "Jain", "max/min",
               "busy (mean)", "idle w/ backlog", "completion p50", "completion p99", "lost",
               "redelivered", "status")
    body = []
    for name, p, r, t in rows:
        busy = _busy(r)
        max_min = "-" if t.max_min is None else (
            "inf" if t.max_min == float("inf") else f"{t.max_min:.2f}")
        body.append([name, format_count(t.tasks_per_s), _shares(p, r), ratio(t.jain, 3),
                     max_min, "-" if busy is None else f"{busy:.0%}",
                     seconds(t.idle_with_backlog_s), ns(t.completion[0]), ns(t.completion[1]),
                     whole(t.lost), whole(t.redelivered), r.status])
    return [fairness_takeaway([(n, t) for n, _, _, t in rows]), "",
            md_table(headers, frozenset((1, 3, 4, 5, 6, 7, 8, 9, 10)), body).rstrip()]


def fairness_takeaway(rows: Sequence[tuple[str, TaskRow]]) -> str:
    """Which design finished tasks soonest with the slow worker, relative to
    :data:`TASK_REFERENCE`, and which dealt the most and least evenly, from the rows."""
    ran = [(n, t) for n, t in rows if t.completion[1] is not None and t.jain is not None]
    if not ran:
        return "No design completed tasks with a slow worker here."
    name, best = min(ran, key=lambda x: x[1].completion[1] or 0)
    text = (f"With one worker ten times slower, lowest completion p99: **{name}** "
            f"({format_ns(best.completion[1] or 0)})")
    ref = next((t for n, t in ran if n == TASK_REFERENCE), None)
    if ref is not None and ref is not best and ref.completion[1]:
        text += f", {TASK_REFERENCE} {format_ns(ref.completion[1])}"
    even_n, even = max(ran, key=lambda x: x[1].jain or 0.0)
    skew_n, skew = min(ran, key=lambda x: x[1].jain or 0.0)
    text += (f". Most even shares: **{even_n}** (Jain {even.jain:.3f}, completion p99 "
             f"{format_ns(even.completion[1] or 0)}); least even: **{skew_n}** (Jain "
             f"{skew.jain:.3f}). A Jain index near 1 here means the slow worker was dealt as "
             "many tasks as the others (round robin); a balancer gives it fewer, so its Jain "
             "falls while completion p99 stays low.")
    return text


def one_call_lines(runs: Sequence[tuple[Path, RunResult]]) -> list[str]:
    """Takeaway and table of the request/reply runs with one call in flight: calls/s, round
    trip p50 / p99, the three legs' p50, requests/CPU-s."""
    rows = sorted(((design_of(r.config), RpcRow.from_result(p, r)) for p, r in runs),
                  key=lambda x: x[0])
    headers = ("design", "calls/s", "round trip p50", "round trip p99", "request leg p50",
               "service p50", "reply leg p50", "requests/CPU-s", "lost", "status")
    body = [[name, format_count(t.requests_per_s), ns(t.round_trip[0]), ns(t.round_trip[1]),
             ns(t.legs[0]), ns(t.legs[2]), ns(t.legs[4]), format_count(t.requests_per_cpu_s),
             whole(t.sent - t.matched), t.status] for name, t in rows]
    return [one_call_takeaway(rows), "", md_table(headers, frozenset(range(1, 9)),
                                                  body).rstrip()]


def one_call_takeaway(rows: Sequence[tuple[str, RpcRow]]) -> str:
    """The quickest round trip with one call in flight, relative to :data:`RPC_REFERENCE`,
    and the leg that dominates it."""
    ran = [(n, t) for n, t in rows if t.round_trip[0] is not None]
    if not ran:
        return "No design answered a request here."
    name, best = min(ran, key=lambda x: x[1].round_trip[0] or 0)
    p50 = best.round_trip[0] or 0
    text = f"One call in flight, quickest round trip: **{name}** (p50 {format_ns(p50)})"
    ref = next((t for n, t in ran if n == RPC_REFERENCE), None)
    if ref is not None and ref is not best and ref.round_trip[0]:
        text += f", {ref.round_trip[0] / max(p50, 1):.1f} times quicker than {RPC_REFERENCE}"
    legs = {"request leg": best.legs[0], "service": best.legs[2], "reply leg": best.legs[4]}
    known = {k: v for k, v in legs.items() if v is not None}
    if known:
        leg, value = max(known.items(), key=lambda x: x[1] or 0)
        text += f"; its longest leg is the {leg} (p50 {format_ns(value or 0)})"
    return text + "."


def skipped_line(directory: Path) -> str:
    """``Not measured here: zmq --zmq-mode reqrep (...).`` from the section's
    :data:`SKIPPED_FILE`, or empty when every design ran."""
    path = directory / SKIPPED_FILE
    if not path.is_file():
        return ""
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return ("Not measured here: " + "; ".join(lines) + ".") if lines else ""


Docs = tuple[list[tuple[Path, RunResult]], list[tuple[Path, CapacityResult]]]


def stored(directory: Path) -> Docs:
    """Run and capacity results stored in ``directory`` (none when it holds none)."""
    return load_documents([str(directory)]) if any(directory.glob("*.json")) else ([], [])


def _size(caps: Sequence[tuple[Path, CapacityResult]], runs: Sequence[tuple[Path, RunResult]],
          default: tuple[int, int]) -> tuple[int, int]:
    """(pubs, subs) of the stored searches, else of the runs, else ``default``."""
    if caps:
        return int(caps[0][1].workload["pubs"]), int(caps[0][1].workload["subs"])
    if runs:
        return int(runs[0][1].config["pubs"]), int(runs[0][1].config["subs"])
    return default


def _slo(caps: Sequence[tuple[Path, CapacityResult]]) -> str:
    return format_ns(caps[0][1].criteria.slo_p99_ns) if caps else "the SLO"


def task_parts(base: Path) -> tuple[list[str], list[RunResult]]:
    """The task-distribution sections of results/README.md from ``base`` (capacity/,
    fairness/, skipped.txt), and the runs they show."""
    _, caps = stored(base / "capacity")
    fair, _ = stored(base / "fairness")
    if not caps and not fair:
        return [], []
    p, w = _size(caps, [], (2, 4))
    parts = [f"## Task distribution: capacity at {p} producers x {w} workers, 64 B, no work",
             "", "`--pattern tasks`: each task done once by one worker of the group. Capacity "
             "counts tasks submitted per second (p99 <= " + _slo(caps) + ", none lost); "
             "latency is completion, from the intended submit time to the end of the task's "
             "work.", "", *capacity_lines(caps, "tasks", TASK_REFERENCE), "",
             machine_line([c.environment for _, c in caps if c.environment]), ""]
    if fair:
        cfg = fair[0][1].config
        parts += [f"## Task distribution: one slow worker ({cfg['pubs']} x {cfg['subs']}, "
                  f"{format_count(cfg['rate'] or 0)}/s per producer, `--work {cfg['work']} "
                  f"--slow-worker {cfg['slow_worker']}`)", "", *fairness_lines(fair), "",
                  "Shares are each worker's part of the tasks; `busy` is the mean of the "
                  "workers' busy time over the measured time (the efficiency); `idle w/ "
                  "backlog` sums the seconds workers sat idle while their group's tasks "
                  "waited elsewhere (a lower bound).", "",
                  machine_line([r.environment for _, r in fair]), ""]
    return _with_skipped(parts, base), [r for _, r in fair]


def rpc_parts(base: Path) -> tuple[list[str], list[RunResult]]:
    """The request/reply sections of results/README.md from ``base`` (capacity/, one-call/,
    skipped.txt), and the runs they show."""
    _, caps = stored(base / "capacity")
    one, _ = stored(base / "one-call")
    if not caps and not one:
        return [], []
    p, s = _size(caps, [], (8, 2))
    parts = [f"## Request/reply: capacity at {p} requesters x {s} responders, open loop", "",
             "`--pattern rpc`: requests leave on schedule however many are unanswered; "
             "capacity counts requests per second with round trip p99 <= " + _slo(caps)
             + " and every reply back in time (a timeout fails the step).", "",
             *capacity_lines(caps, "requests", RPC_REFERENCE), "",
             machine_line([c.environment for _, c in caps if c.environment]), ""]
    if one:
        parts += ["## Request/reply: one call in flight (1 x 1, `--inflight 1`)", "",
                  *one_call_lines(one), "",
                  "Closed loop: a requester sends its next request once the last reply is "
                  "back. The legs, on the host's one clock: request leg (sent -> responder), "
                  "service (in the responder), reply leg (answered -> back).", "",
                  machine_line([r.environment for _, r in one]), ""]
    return _with_skipped(parts, base), [r for _, r in one]


def _with_skipped(parts: list[str], base: Path) -> list[str]:
    """``parts`` with the skipped designs' line before the last machine line."""
    line = skipped_line(base)
    return [*parts[:-2], line, "", *parts[-2:]] if line else parts

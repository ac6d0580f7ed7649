"""What a person sees: live progress on stderr and the summary table."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from msgbench.analysis.rpc_report import LEG_NAMES, responder_shares
from msgbench.analysis.units import format_count, format_ns
from msgbench.results.model import RunResult, SecondStats
from msgbench.results.records import QUEUE_WAIT, QUEUE_WAIT_UNCORRECTED, SERVICE

_STATUS_STYLE = {"ok": "green", "degraded": "yellow", "failed": "red"}


class ConsoleProgress:
    """Prints phases and one line per measured second to stderr."""

    def __init__(self, console: Console, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet

    def phase(self, name: str) -> None:
        """See :class:`msgbench.run.coordinator.Progress`."""
        if not self.quiet:
            self.console.print(f"[dim]{name}...[/dim]", highlight=False)

    def second(self, stats: SecondStats, lost_so_far: int) -> None:
        """See :class:`msgbench.run.coordinator.Progress`."""
        if self.quiet:
            return
        lost = f"[red]{lost_so_far}[/red]" if lost_so_far else "0"
        self.console.print(
            f"  {stats.second + 1:>4d}s  {format_count(stats.delivered):>9}/s delivered  "
            f"p99 {format_ns(stats.p99_ns):>9}  lost so far {lost}",
            highlight=False,
        )


def _process_cell(p: dict[str, Any]) -> str:
    """``1.02 s CPU (99 % of a core, waited 3 %)  peak 46 MiB``; shares only where recorded.

    "waited" is the share of the window its threads were runnable but had no CPU.
    """
    cpu = float(p["cpu_s"])
    share = ""
    if "core_share" in p:
        core = float(p["core_share"])
        window = cpu / core if core else 0.0
        waited = float(p.get("cpu_wait_s", 0.0)) / window if window else 0.0
        share = f" ({core * 100:.0f} % of a core, waited {waited * 100:.0f} %)"
    return f"{cpu:.2f} s CPU{share}  peak {p['peak_rss_bytes'] / 2**20:.0f} MiB"


def _spread(summary: dict[str, Any], keys: tuple[str, ...] = ("p50", "p99")) -> str:
    return "  ".join(f"{k} {format_ns(summary[k])}" for k in keys)


ALL_PERCENTILES = ("p50", "p90", "p99", "p999", "max")


def _broadcast_rows(t: Table, result: RunResult) -> None:
    """Counts, rate and latency of a fan-out run."""
    s, n = result.summary, result.summary.counters
    t.add_row("published", f"{n.published:,}")
    t.add_row("expected / delivered", f"{n.expected:,} / {n.delivered:,}")
    t.add_row("lost / duplicated / reordered", f"{n.lost:,} / {n.duplicated:,} / {n.reordered:,}")
    if n.redelivered:
        t.add_row("redelivered (at-least-once)", f"{n.redelivered:,}")
    if result.config.get("churn_period_s"):
        t.add_row("  lost while away (churn)", f"{n.lost_during_churn:,}")
    t.add_row("deliveries/s", f"{format_count(s.deliveries_per_s)}  ({s.mb_per_s:.1f} MB/s)")
    t.add_row("latency (from intended send)" if result.latency_mode == "open-loop"
              else "latency (closed loop: saturated)", _spread(s.latency_ns, ALL_PERCENTILES))
    t.add_row("  uncorrected (from actual send)", _spread(s.latency_uncorrected_ns))


def _publish_delay_row(t: Table, result: RunResult) -> None:
    d = result.summary.publish_delay_ns
    if d["count"]:
        t.add_row("  publish delay (actual - intended)", _spread(d, ("p50", "p99", "max")))


def _task_rows(t: Table, result: RunResult) -> None:
    """The ledger, tasks/s, completion, queue wait and service, and each group's fairness."""
    s, n = result.summary, result.summary.counters
    t.add_row("submitted / completed (unique)", f"{n.published:,} / {n.delivered:,}")
    t.add_row("lost / duplicated / redelivered / orphaned",
              f"{n.lost:,} / {n.duplicated:,} / {n.redelivered:,} / {n.orphaned:,}")
    t.add_row("tasks/s", f"{format_count(s.deliveries_per_s)}  "
              f"({format_count(s.msgs_per_cpu_s)} per CPU-second)")
    t.add_row("completion (from intended submit)", _spread(s.latency_ns, ALL_PERCENTILES))
    t.add_row("  uncorrected (from actual send)", _spread(s.latency_uncorrected_ns))
    _publish_delay_row(t, result)
    wait, raw = result.legs.get(QUEUE_WAIT), result.legs.get(QUEUE_WAIT_UNCORRECTED)
    if wait and wait.get("count"):
        extra = f"  (from actual send p99 {format_ns(raw['p99'])})" if raw and raw.get(
            "count") else ""
        t.add_row("  queue wait (submit -> worker)", _spread(wait) + extra)
    service = result.legs.get(SERVICE)
    if service and service.get("count"):
        t.add_row("  service (worker's time)", _spread(service))
    for name, g in result.groups.items():
        shares = "/".join(f"{x:,}" for x in g["shares"])
        ratio = f"{g['max_min']:.2f}" if g.get("max_min") is not None else "inf"
        busy = ", ".join(f"{u:.0%}" for u in g["utilisation"])
        t.add_row(f"group {name}", f"tasks per member {shares}  Jain {g['jain']:.3f}  "
                  f"max/min {ratio}  busy {busy}")
        if g.get("held_max"):
            t.add_row("", "most held at once " + "/".join(str(h) for h in g["held_max"]))
        idle = g.get("idle_with_backlog_s")
        if idle is not None:
            total = g.get("idle_with_backlog_total_s", sum(idle))
            t.add_row("", f"idle while tasks waited {total:.2f} s  ("
                      + ", ".join(f"{x:.2f}" for x in idle) + " s)")
        if g.get("recovery_s") is not None:
            t.add_row("", f"first task delivered again {g['recovery_s'] * 1e3:.0f} ms after "
                      "the kill")


def _rpc_rows(t: Table, result: RunResult) -> None:
    """Requests, the reply ledger, requests/s, the round trip and its legs, responders."""
    s, n, cfg = result.summary, result.summary.counters, result.config
    t.add_row("requests sent / replies matched", f"{n.published:,} / {n.delivered:,}")
    t.add_row("timeouts / late / orphan", f"{n.timeouts:,} / {n.late:,} / "
              f"{n.orphan_replies:,}  (--timeout {cfg.get('timeout_s', 1.0):g} s)")
    t.add_row("misrouted / duplicated / errors",
              f"{n.misrouted:,} / {n.duplicated:,} / {n.errors:,}")
    t.add_row("requests/s", f"{format_count(s.deliveries_per_s)}  "
              f"({format_count(s.msgs_per_cpu_s)} per CPU-second)")
    inflight = cfg.get("inflight")
    label = ("round trip (from intended send)" if result.latency_mode == "open-loop" else
             f"round trip (closed loop, --inflight {inflight})" if inflight else
             "round trip (closed loop)")
    t.add_row(label, _spread(s.latency_ns, ALL_PERCENTILES))
    t.add_row("  from actual send", _spread(s.latency_uncorrected_ns))
    _publish_delay_row(t, result)
    if result.legs:
        t.add_row("  legs (p50 / p99)", "   ".join(
            f"{LEG_NAMES.get(name, name)} {format_ns(leg['p50'])} / {format_ns(leg['p99'])}"
            for name, leg in result.legs.items() if leg["count"]))
    shares = responder_shares(result)
    if shares:
        t.add_row("answered per responder", "/".join(f"{a:,}" for _, a, _ in shares) + "  ("
                  + "/".join(f"{x:.0%}" for _, _, x in shares) + ", warm-up included)")


def summary_table(result: RunResult, path: str | None) -> Table:
    """The end-of-run summary as a rich table, with the rows of the run's pattern."""
    s = result.summary
    cfg = result.config
    pattern = cfg.get("pattern") or "broadcast"
    rate = "max (closed loop)" if cfg["rate"] is None else f"{cfg['rate']:g}/s per publisher"
    roles = {"tasks": ("producer", "worker"), "rpc": ("requester", "responder")}
    pub, sub = roles.get(pattern, ("pub", "sub"))
    title = (
        f"msgbench {cfg['target']}: {cfg['pubs']} {pub} -> {cfg['subs']} {sub}, "
        f"{cfg['size']} B, rate {rate}, {cfg['duration_s']:g} s"
    )
    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column("what", style="bold")
    t.add_column("value")
    style = _STATUS_STYLE.get(result.status, "")
    status = f"[{style}]{result.status}[/{style}]" + (" (partial)" if result.partial else "")
    t.add_row("status", status)
    for reason in result.reasons:
        t.add_row("", f"[{style}]{reason}[/{style}]")
    if pattern == "tasks":
        _task_rows(t, result)
    elif pattern == "rpc":
        _rpc_rows(t, result)
    else:
        _broadcast_rows(t, result)
        _publish_delay_row(t, result)
    per = {"tasks": "tasks", "rpc": "requests"}.get(pattern, "deliveries")
    t.add_row(
        "CPU (measured window)",
        f"{s.cpu_s:.2f} s  ->  {format_count(s.msgs_per_cpu_s)} {per} per CPU-second",
    )
    for p in result.processes:
        t.add_row(f"  {p['role']}", _process_cell(p))
    if result.measure_started_at:
        lines = result.limits or ["none found: no process near a full core, publishers on "
                                  "schedule, no wait for a CPU worth naming"]
        t.add_row("first limit", f"[bold]{lines[0]}[/bold]" if result.limits else lines[0])
        for line in lines[1:]:
            t.add_row("", line)
    injected = result.environment.get("injected_cost_ns")
    if injected:
        t.add_row(
            "[red]injected cost[/red]", f"{injected} ns per delivery (MSGBENCH_INJECT_COST_NS)"
        )
    work = result.environment.get("injected_work")
    if work:
        t.add_row("[red]injected work[/red]",
                  f"{work:.3g} units per delivery (MSGBENCH_INJECT_WORK)")
    c = result.summary.counters
    if c.injected_units:
        per_ns = c.injected_cpu_ns / max(1, c.delivered)
        t.add_row("[red]injected, burnt[/red]",
                  f"{c.injected_units:,} units in {c.injected_cpu_ns / 1e6:,.1f} ms of thread CPU "
                  f"({per_ns:,.0f} ns per delivery, measured)")
    if path:
        t.add_row("result", path)
    return t

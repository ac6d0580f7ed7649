"""What a person sees: live progress on stderr and the summary table."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from msgbench.analysis.units import format_count, format_ns
from msgbench.results.model import RunResult, SecondStats

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


def summary_table(result: RunResult, path: str | None) -> Table:
    """The end-of-run summary as a rich table."""
    s = result.summary
    cfg = result.config
    rate = "max (closed loop)" if cfg["rate"] is None else f"{cfg['rate']:g}/s per publisher"
    roles = {"tasks": ("producer", "worker"), "rpc": ("requester", "responder")}
    pub, sub = roles.get(cfg.get("pattern", "broadcast"), ("pub", "sub"))
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
    n = s.counters
    t.add_row("published", f"{n.published:,}")
    t.add_row("expected / delivered", f"{n.expected:,} / {n.delivered:,}")
    t.add_row("lost / duplicated / reordered", f"{n.lost:,} / {n.duplicated:,} / {n.reordered:,}")
    if n.redelivered:
        t.add_row("redelivered (at-least-once)", f"{n.redelivered:,}")
    if result.config.get("churn_period_s"):
        t.add_row("  lost while away (churn)", f"{n.lost_during_churn:,}")
    t.add_row("deliveries/s", f"{format_count(s.deliveries_per_s)}  ({s.mb_per_s:.1f} MB/s)")
    lat = s.latency_ns
    t.add_row(
        "latency (from intended send)"
        if result.latency_mode == "open-loop"
        else "latency (closed loop: saturated)",
        "  ".join(f"{k} {format_ns(lat[k])}" for k in ("p50", "p90", "p99", "p999", "max")),
    )
    raw = s.latency_uncorrected_ns
    t.add_row(
        "  uncorrected (from actual send)",
        f"p50 {format_ns(raw['p50'])}  p99 {format_ns(raw['p99'])}",
    )
    if s.publish_delay_ns["count"]:
        d = s.publish_delay_ns
        t.add_row(
            "  publish delay (actual - intended)",
            f"p50 {format_ns(d['p50'])}  p99 {format_ns(d['p99'])}  max {format_ns(d['max'])}",
        )
    for name, g in result.groups.items():
        shares = "/".join(f"{x:,}" for x in g["shares"])
        ratio = f"{g['max_min']:.2f}" if g.get("max_min") is not None else "inf"
        busy = ", ".join(f"{u:.0%}" for u in g["utilisation"])
        t.add_row(f"group {name}", f"tasks per member {shares}  Jain {g['jain']:.3f}  "
                  f"max/min {ratio}  busy {busy}")
        if g.get("recovery_s") is not None:
            t.add_row("", f"first task delivered again {g['recovery_s'] * 1e3:.0f} ms after "
                      "the kill")
    t.add_row(
        "CPU (measured window)",
        f"{s.cpu_s:.2f} s  ->  {format_count(s.msgs_per_cpu_s)} deliveries per CPU-second",
    )
    for p in result.processes:
        t.add_row(
            f"  {p['role']}", f"{p['cpu_s']:.2f} s CPU  peak {p['peak_rss_bytes'] / 2**20:.0f} MiB"
        )
    injected = result.environment.get("injected_cost_ns")
    if injected:
        t.add_row(
            "[red]injected cost[/red]", f"{injected} ns per delivery (MSGBENCH_INJECT_COST_NS)"
        )
    if path:
        t.add_row("result", path)
    return t

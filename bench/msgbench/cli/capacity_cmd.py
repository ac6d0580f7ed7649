"""``msgbench capacity``: the highest sustainable rate of a workload, and its curve.

Exit 0 when the search produced a capacity (converged, at the ceiling, or a lower bound when
the budget ran out), 1 when no rate passed or it was interrupted, 2 for bad input.
"""

from __future__ import annotations

import shlex
import signal
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from msgbench.analysis.units import format_count, format_ns
from msgbench.cli.report_cmd import fail
from msgbench.orchestration.capacity import (
    DEFAULT_SLO,
    PUBLISH_DELAY_SHARE_OF_SLO,
    BadWorkload,
    Plan,
    Search,
    doc_name,
)
from msgbench.orchestration.sweep import Cell, Runner
from msgbench.results.capacity import STOP_INTERRUPTED, CapacityResult, Criteria, Step
from msgbench.workload.values import ConfigError, parse_duration, parse_rate

EXIT_NONE = 1
EXIT_INTERRUPTED = 130


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _rate(text: str, option: str) -> float:
    try:
        rate = parse_rate(text)
    except ConfigError as exc:
        fail(f"{option}: {exc}")
    if rate is None:
        fail(f"{option} needs a number of messages/s per publisher, not 'max'")
    return rate


def _ns(text: str, option: str) -> int:
    try:
        return int(parse_duration(text, option) * 1e9)
    except ValueError as exc:
        fail(str(exc))


def step_line(step: Step) -> str:
    """One progress line: rate, verdict, delivered, p50 / p99, and why it failed."""
    verdict = "[green]pass[/green]" if step.passed else "[red]FAIL[/red]"
    delivered = "-" if step.deliveries_per_s is None else format_count(step.deliveries_per_s)
    lat = ("" if step.p99_ns is None or step.p50_ns is None
           else f"p50 {format_ns(step.p50_ns):>8}  p99 {format_ns(step.p99_ns):>8}")
    why = f"  {step.why}" if step.why else ""
    return (f"  {step.phase:<6} {format_count(step.offered):>8} msg/s offered  {verdict}  "
            f"{delivered:>8} deliveries/s  {lat}{why}  [dim]({step.elapsed_s:.0f} s)[/dim]")


def summary_lines(result: CapacityResult, path: Path) -> list[str]:
    """What the search found, for people."""
    w = result.workload
    head = (f"capacity of {w['target']} {w['pubs']}x{w['subs']} {w['size']} B "
            f"(p99 <= {format_ns(result.criteria.slo_p99_ns)}, no loss): ")
    at = result.step_at_capacity()
    if result.capacity_offered is None or at is None:
        lines = [head + "none: no rate passed"]
    else:
        bound = " (at least: the budget ran out)" if result.stopped == "budget" else ""
        lines = [head + f"{format_count(result.capacity_offered)} msgs/s offered "
                 f"({format_count(result.capacity_rate or 0)}/s per publisher), "
                 f"{format_count(at.deliveries_per_s or 0)} deliveries/s{bound}"]
        half = result.half_step()
        if half is not None and half.p50_ns is not None and half.p99_ns is not None:
            lines.append(f"  at 50 %: p50 {format_ns(half.p50_ns)}, p99 {format_ns(half.p99_ns)}"
                         + ("" if half.passed else f" ({half.why})"))
    if result.limit:
        lines.append(f"  limit: {result.limit}")
    lines.append(f"  stopped: {result.stopped} after {len(result.steps)} steps, "
                 f"{result.elapsed_s:.0f} s of a {result.budget_s:.0f} s budget")
    lines.append(f"  result: {path}")
    return lines


@click.command("capacity", context_settings={"ignore_unknown_options": True})
@click.option("--target", "-t", default="inproc", show_default=True,
              help="Target, optionally with its flags: 'zmq --zmq-mode proxy'.")
@click.option("--pubs", "-p", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--subs", "-s", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--topics", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--slo", default=DEFAULT_SLO, show_default=True,
              help="A step passes only if its p99 latency is at most this.")
@click.option("--max-publish-delay", default=None,
              help="A step passes only if the publish delay p99 (publishers behind their "
              "schedule) is at most this [half of --slo].")
@click.option("--start", default="1000", show_default=True,
              help="First rate per publisher (messages/s).")
@click.option("--factor", type=click.FloatRange(min=1.1), default=2.0, show_default=True,
              help="Ramp multiplier until the knee is bracketed.")
@click.option("--precision", type=click.FloatRange(min=0.01), default=0.1, show_default=True,
              help="Stop when the highest pass is within this fraction of the lowest failure.")
@click.option("--max-rate", default="10M", show_default=True,
              help="Highest rate per publisher to try.")
@click.option("--min-rate", default="1", show_default=True,
              help="Lowest rate per publisher to try.")
@click.option("--budget", default="5m", show_default=True,
              help="Wall-time bound of the whole search.")
@click.option("--no-half", is_flag=True, help="Skip the step at 50 %% of the capacity.")
@click.option("--duration", "-d", default="3s", show_default=True,
              help="Measured time of each step.")
@click.option("--warmup", "-w", default="1s", show_default=True, help="Warm-up of each step.")
@click.option("--out", "-o", default="results", show_default=True,
              help="Directory for the capacity result (its steps go in a folder beside it).")
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
def capacity(**params: Any) -> None:
    """Find the highest sustainable rate: ramp, then bisect, each step a fresh `msgbench run`.

    A step passes when nothing is lost, nobody is disconnected, the publishers kept their
    schedule and p99 <= --slo. Other `msgbench run` options (e.g. `--pattern tasks`,
    `--zmq-mode proxy`) go to every step. Ctrl-C keeps the steps done.
    """
    try:
        shlex.split(params["target"])[0]
        budget = parse_duration(params["budget"], "--budget")
        for key in ("duration", "warmup"):
            parse_duration(params[key], f"--{key}")
    except (ValueError, IndexError) as exc:
        fail(str(exc) or "--target: empty")
    plan = Plan(start_rate=_rate(params["start"], "--start"), factor=params["factor"],
                precision=params["precision"], min_rate=_rate(params["min_rate"], "--min-rate"),
                max_rate=_rate(params["max_rate"], "--max-rate"), budget_s=budget,
                half=not params["no_half"])
    if plan.min_rate > plan.max_rate:
        fail("--min-rate is above --max-rate")
    slo_ns = _ns(params["slo"], "--slo")
    delay_ns = (int(slo_ns * PUBLISH_DELAY_SHARE_OF_SLO) if params["max_publish_delay"] is None
                else _ns(params["max_publish_delay"], "--max-publish-delay"))
    criteria = Criteria(slo_p99_ns=slo_ns, max_publish_delay_ns=delay_ns)
    cell = Cell(params["target"], params["pubs"], params["subs"], params["size"], "1",
                params["topics"], params["duration"], params["warmup"],
                tuple(params["extra"]))
    err = Console(stderr=True, highlight=False)
    path = Path(params["out"]) / doc_name(cell)
    err.print(f"capacity search: {cell.label().rsplit(' rate', 1)[0]}, steps of "
              f"{params['duration']} (+{params['warmup']} warm-up), budget {params['budget']}",
              soft_wrap=True)
    search = Search(cell, criteria, plan, path, Runner(),
                    on_step=lambda s: err.print(step_line(s), soft_wrap=True))
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        result = search.run()
    except BadWorkload as exc:
        fail(str(exc))
    finally:
        signal.signal(signal.SIGTERM, previous)
    Console(highlight=False).print("\n".join(summary_lines(result, path)), soft_wrap=True)
    if result.stopped == STOP_INTERRUPTED:
        sys.exit(EXIT_INTERRUPTED)
    if result.capacity_rate is None:
        sys.exit(EXIT_NONE)

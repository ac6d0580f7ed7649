"""``msgbench compare BASE NEW`` and ``msgbench ci``: a regression gate that ignores noise.

Throughput is gated on messages per CPU-second (wall-clock throughput varies
16-19 % between identical runs on a shared machine, CPU-normalised about 4 %),
latency on p50 at a fixed rate; p99 and p99.9 are gated loosely, and latency
of closed-loop runs (measured under saturation) is reported, never gated.
A metric regresses only when the rank test *and* the bootstrap interval agree
(see :mod:`msgbench.analysis.gate`). Exit 0 pass, 1 regression, 2 error.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from msgbench.analysis.gate import (
    DEFAULT_ALPHA,
    DEFAULT_CONFIDENCE,
    REGRESSION,
    CompareError,
    Limits,
    Verdict,
    check_baseline,
    evaluate,
    pair,
)
from msgbench.analysis.report import load_all
from msgbench.analysis.units import format_count, format_ns
from msgbench.cli.report_cmd import fail
from msgbench.cli.sweep_cmd import Job, run_jobs
from msgbench.orchestration.sweep import (
    Cell,
    Runner,
    WorkloadError,
    expand,
    install_revision,
    read_workload,
)
from msgbench.results.model import ResultError

EXIT_PASS = 0
TABLE_WIDTH = 160
"""Width of the evidence table when stdout is not a terminal (CI logs)."""
EXIT_REGRESSION = 1
def _fmt(metric: str, value: float) -> str:
    return format_ns(value) if metric.startswith("p") else format_count(value)


def verdict_table(verdicts: Sequence[tuple[str, Verdict]], confidence: float) -> Table:
    """The evidence, one row per workload and metric."""
    t = Table(title="msgbench compare (NEW vs BASE)", title_justify="left")
    for name in ("workload", "metric", "n", "BASE median", "NEW median", "NEW/BASE",
                 f"{confidence:.0%} CI", "p(worse)", "limit", "verdict"):
        t.add_column(name, justify="left" if name in ("workload", "metric", "verdict")
                     else "right")
    style = {"regression": "red", "improved": "green", "ok": "", "info": "dim"}
    for label, v in verdicts:
        if v.threshold is None:
            limit = "-"
        else:
            limit = f"{'-' if v.higher_is_better else '+'}{v.threshold:.0%}"
        s = style.get(v.verdict, "")
        t.add_row(label, v.metric, f"{v.n_base}/{v.n_new}", _fmt(v.metric, v.base_median),
                  _fmt(v.metric, v.new_median), f"{v.ratio:.3f}",
                  f"{v.ci_low:.3f}-{v.ci_high:.3f}", f"{v.p_worse:.3f}", limit,
                  f"[{s}]{v.verdict}[/{s}]" if s else v.verdict)
    return t


def run_gate(base_specs: Sequence[str], new_specs: Sequence[str], limits: Limits,
             allow_degraded: bool, out: Console, err: Console) -> int:
    """Load, check, compare and print; returns the exit code (0 pass, 1 regression).

    Raises :class:`CompareError` / :class:`ResultError` for exit 2.
    """
    base, new = load_all(base_specs), load_all(new_specs)
    for w in check_baseline(base, allow_degraded):
        err.print(f"warning: {w}", highlight=False)
    pairs = pair(base, new)
    for label, b, n in pairs:
        durations = {r.config["duration_s"] for _, r in (*b, *n)}
        if len(durations) > 1:
            err.print(f"warning: {label}: runs of different durations "
                      f"{sorted(durations)} s", highlight=False)
    verdicts, problems = evaluate(pairs, limits)
    out.print(verdict_table(verdicts, limits.confidence))
    regressions = [f"{lab}: {v.metric} {v.ratio:.3f}x" for lab, v in verdicts
                   if v.verdict == REGRESSION]
    for p in problems:
        out.print(f"[red]problem:[/red] {p}", highlight=False)
    if regressions or problems:
        out.print(f"[red]REGRESSION[/red]: {'; '.join(regressions + problems)}", highlight=False)
        return EXIT_REGRESSION
    out.print("[green]PASS[/green]: no regression beyond the limits", highlight=False)
    return EXIT_PASS


def parse_limit(text: str) -> float | None:
    """``5`` or ``5%`` -> 0.05; ``off`` -> None (report only)."""
    t = text.strip().lower().rstrip("%")
    if t in ("off", "none", ""):
        return None
    try:
        value = float(t)
    except ValueError:
        raise click.BadParameter(f"{text!r}: a percentage such as 5 or 'off'") from None
    if value < 0:
        raise click.BadParameter("a threshold cannot be negative")
    return value / 100.0


def limit_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The threshold flags shared by ``compare`` and ``ci``."""
    opts = [
        click.option("--max-slowdown", default="5", show_default=True,
                     help="Gate: msgs/CPU-s may drop this many percent ('off' to report only)."),
        click.option("--max-p50-increase", default="15", show_default=True,
                     help="Gate: p50 at a fixed rate may grow this many percent."),
        click.option("--max-p99-increase", default="50", show_default=True,
                     help="Gate: p99 at a fixed rate (loose)."),
        click.option("--max-p999-increase", default="100", show_default=True,
                     help="Gate: p99.9 at a fixed rate (loose)."),
        click.option("--alpha", type=float, default=DEFAULT_ALPHA, show_default=True,
                     help="Significance level of the one-sided Mann-Whitney test."),
        click.option("--confidence", type=float, default=DEFAULT_CONFIDENCE, show_default=True,
                     help="Confidence of the bootstrap interval of the median ratio."),
        click.option("--allow-degraded-baseline", is_flag=True,
                     help="Use baseline runs that lost messages or did not finish cleanly."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def limits_from(params: dict[str, Any]) -> Limits:
    """:class:`Limits` from the flags of :func:`limit_options`."""
    if not 0 < params["alpha"] < 1 or not 0 < params["confidence"] < 1:
        fail("--alpha and --confidence must be between 0 and 1")
    try:
        return Limits(parse_limit(params["max_slowdown"]), parse_limit(params["max_p50_increase"]),
                      parse_limit(params["max_p99_increase"]),
                      parse_limit(params["max_p999_increase"]), params["alpha"],
                      params["confidence"])
    except click.BadParameter as exc:
        fail(exc.format_message())


def gate_and_exit(base: Sequence[str], new: Sequence[str], params: dict[str, Any]) -> None:
    """Run the gate and exit with its code; bad input exits 2 with one line."""
    limits = limits_from(params)
    try:
        code = run_gate(base, new, limits, params["allow_degraded_baseline"],
                        Console(width=None if sys.stdout.isatty() else TABLE_WIDTH),
                        Console(stderr=True))
    except (CompareError, ResultError) as exc:
        fail(str(exc))
    sys.exit(code)


@click.command("compare")
@click.argument("base")
@click.argument("new")
@limit_options
def compare(base: str, new: str, **params: Any) -> None:
    """Is NEW slower than BASE beyond noise? Each is a result file, directory or glob
    (quote it); several trials per side. Exit 0 pass, 1 regression, 2 error."""
    gate_and_exit([base], [new], params)


DEFAULT_SUITE: dict[str, Any] = {
    "target": ["inproc"], "pubs": [1], "subs": [8], "size": [64], "rate": ["20k", "max"],
    "duration": "1s", "warmup": "300ms",
}
"""inproc 1 -> 8 at a fixed rate (gates p50) and in closed loop (gates msgs/CPU-s)."""
DEFAULT_TRIALS = 5


def _env_pairs(items: Sequence[str]) -> dict[str, str]:
    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--candidate-env takes KEY=VALUE, got {item!r}")
        env[key] = value
    return env


def _suite(params: dict[str, Any]) -> list[Cell]:
    spec = dict(DEFAULT_SUITE)
    if params["suite"]:
        spec = {**spec, **read_workload(Path(params["suite"]))}
    for key in ("duration", "warmup"):
        if params[key]:
            spec[key] = params[key]
    spec["trials"] = 1  # trials are interleaved below, base and new in turn
    return expand(spec)


def _schedule(cells: Sequence[Cell], trials: int, base: Runner | None, new: Runner,
              out: Path) -> list[Job]:
    jobs = []
    for t in range(trials):
        for cell in cells:
            c = replace(cell, trial=t)
            pair = [Job(c, new, out / "new", f"new #{t + 1}")]
            if base is not None:
                # alternate who goes first, so a drift of the machine hits both sides alike
                b = Job(c, base, out / "base", f"base #{t + 1}")
                pair = [b, *pair] if t % 2 == 0 else [*pair, b]
            jobs.extend(pair)
    return jobs


@click.command("ci")
@click.option("--baseline", "baseline_dir", default=None,
              help="Directory (or glob) of stored baseline result files.")
@click.option("--baseline-rev", default=None,
              help="Git revision to install side by side and run as the baseline.")
@click.option("--suite", default=None, help="Workload file (as for sweep) instead of the "
              "default suite: inproc 1x8 64B at 20k/s and max.")
@click.option("--trials", type=int, default=DEFAULT_TRIALS, show_default=True,
              help="Runs per side and workload, interleaved.")
@click.option("--duration", "-d", default=None, help="Measured time per run [1s].")
@click.option("--warmup", "-w", default=None, help="Warm-up per run [300ms].")
@click.option("--out", "-o", default=None, help="Where runs go: OUT/base, OUT/new "
              "[results/ci-<time>].")
@click.option("--candidate-env", multiple=True, help="KEY=VALUE for the candidate's runs only "
              "(e.g. MSGBENCH_INJECT_COST_NS=300 to check that the gate catches a slowdown).")
@limit_options
def ci(**params: Any) -> None:
    """Run a small suite for the current code and a baseline, then gate like `compare`.

    Exit 0 pass, 1 regression, 2 error (including runs that could not start).
    """
    if bool(params["baseline_dir"]) == bool(params["baseline_rev"]):
        fail("give exactly one of --baseline DIR or --baseline-rev REV")
    if params["trials"] < 1:
        fail("--trials must be at least 1")
    limits_from(params)  # bad thresholds fail before anything runs
    try:
        cells = _suite(params)
    except WorkloadError as exc:
        fail(str(exc))
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out = Path(params["out"] or f"results/ci-{stamp}")
    err = Console(stderr=True)
    new = Runner(env=_env_pairs(params["candidate_env"]))
    with tempfile.TemporaryDirectory(prefix="msgbench-ci-") as tmp:
        base: Runner | None = None
        if params["baseline_rev"]:
            err.print(f"installing revision {params['baseline_rev']}...", highlight=False)
            try:
                base = Runner(command=install_revision(params["baseline_rev"], Path(tmp)))
            except WorkloadError as exc:
                fail(str(exc))
        outcomes = run_jobs(_schedule(cells, params["trials"], base, new, out), err)
    lost = [o for o in outcomes if o.result is None]
    if lost:
        fail(f"{len(lost)} run(s) left no result, e.g. {lost[0].cell.label()}: {lost[0].reason}")
    base_spec = str(out / "base") if base is not None else params["baseline_dir"]
    err.print(f"BASE {base_spec}  NEW {out / 'new'}", highlight=False)
    gate_and_exit([base_spec], [str(out / "new")], params)

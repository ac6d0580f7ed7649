"""``msgbench compare BASE NEW`` and ``msgbench ci``: a regression gate that proves its verdicts.

One primary metric, CPU-ns per delivered message over every process (per task
completed for task runs, per reply matched for request/reply runs), gated at
``--max-slowdown``; latency percentiles (completion, round trip) are reported and
gated only when a limit is given. Runs of different patterns are never compared.
Exit 0 pass (or inconclusive, said so), 1 regression, 2 error.
The statistics are in :mod:`msgbench.analysis.stats_tests`, the block runner
in :mod:`msgbench.orchestration.ci`; this module only parses and prints.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from msgbench.analysis.gate import (
    CompareError,
    Limits,
    Verdict,
    candidate_problems,
    check_baseline,
    check_enough,
    check_mixed,
    comparisons,
    evaluate,
    final,
    is_cpu_metric,
    is_latency_metric,
)
from msgbench.analysis.report import load_all
from msgbench.analysis.stats_tests import (
    DEFAULT_ALPHA,
    DEFAULT_LOOKS,
    DEFAULT_PASS_ALPHA,
    INCONCLUSIVE,
    PASS,
    REGRESSION,
)
from msgbench.analysis.units import format_count, format_ns
from msgbench.cli.report_cmd import fail
from msgbench.orchestration.ci import (
    DEFAULT_CONTENTION,
    DEFAULT_MAX_REDO,
    CiError,
    Plan,
    calibrate,
    run_ci,
)
from msgbench.orchestration.sweep import (
    Cell,
    Runner,
    WorkloadError,
    expand,
    install_revision,
    read_workload,
)
from msgbench.results.model import ResultError
from msgbench.run.inject import WORK_ENV, units_for

EXIT_PASS = 0
EXIT_REGRESSION = 1
TABLE_WIDTH = 160
"""Width of the evidence table when stdout is not a terminal (CI logs)."""
STYLE = {REGRESSION: "red", PASS: "green", INCONCLUSIVE: "yellow", "info": "dim"}


def _fmt(metric: str, value: float) -> str:
    if is_cpu_metric(metric):
        return f"{value:.1f} ns"
    return format_ns(value) if is_latency_metric(metric) else format_count(value)


def verdict_table(verdicts: Sequence[Verdict]) -> Table:
    """The evidence, one row per workload and metric."""
    t = Table(title="msgbench gate (NEW vs BASE)", title_justify="left")
    for name in ("workload", "metric", "blocks", "BASE median", "NEW median", "change",
                 "p(worse)", "p(within)", "limit", "verdict"):
        t.add_column(name, justify="left" if name in ("workload", "metric", "verdict")
                     else "right")
    for v in verdicts:
        limit = "-" if v.limit is None else f"+{v.limit:.0%}"
        s = STYLE.get(v.verdict, "")
        n = f"{v.n}" if v.paired else f"{v.n} (unpaired)"
        t.add_row(v.workload, v.metric, n, _fmt(v.metric, v.base_median),
                  _fmt(v.metric, v.new_median), f"{v.change:+.1%} worse" if v.change >= 0
                  else f"{-v.change:.1%} better", f"{v.p_worse:.4f}", f"{v.p_within:.4f}",
                  limit, f"[{s}]{v.verdict}[/{s}]" if s else v.verdict)
    return t


def conclude(verdicts: Sequence[Verdict], problems: Sequence[str], out: Console) -> int:
    """Print the table and the one-line verdict; return the exit code."""
    out.print(verdict_table(verdicts))
    for p in problems:
        out.print(f"[red]problem:[/red] {p}", highlight=False)
    gated = [v for v in verdicts if v.limit is not None]
    bad = [f"{v.workload}: {v.metric} {v.change:+.1%}" for v in gated if v.verdict == REGRESSION]
    if bad or problems:
        out.print(f"[red]REGRESSION[/red]: {'; '.join([*bad, *problems])}", highlight=False)
        return EXIT_REGRESSION
    if gated and all(v.verdict == PASS for v in gated):
        out.print("[green]PASS[/green]: every gated change is shown to be below its limit",
                  highlight=False)
    else:
        out.print("[yellow]INCONCLUSIVE[/yellow]: no regression shown, but not shown to be "
                  "below the limit either; run more blocks (exit 0)", highlight=False)
    return EXIT_PASS


def run_gate(base_specs: Sequence[str], new_specs: Sequence[str], limits: Limits,
             params: dict[str, Any], out: Console, err: Console) -> int:
    """Load, check, compare and print; returns the exit code (0 pass, 1 regression).

    Raises :class:`CompareError` / :class:`ResultError` for exit 2.
    """
    base, new = load_all(base_specs), load_all(new_specs)
    for w in check_baseline(base, params["allow_degraded_baseline"]):
        err.print(f"warning: {w}", highlight=False)
    for w in check_mixed(base, new, params["allow_mixed"]):
        err.print(f"warning: {w}", highlight=False)
    cs, problems = [], []
    for c in comparisons(base, new):
        durations = {r.config["duration_s"] for _, r in (*c.base, *c.new)}
        if len(durations) > 1:
            err.print(f"warning: {c.label}: runs of different durations "
                      f"{sorted(durations)} s", highlight=False)
        c, found = candidate_problems(c)
        problems += found
        if c.new:
            cs.append(c)
    if cs:
        check_enough(cs, limits.alpha)
    return conclude(final(evaluate(cs, limits)) if cs else [], problems, out)


def parse_limit(text: str) -> float | None:
    """``5`` or ``5%`` -> 0.05; ``off`` -> None (report only)."""
    t = text.strip().lower().rstrip("%")
    if t in ("off", "none", ""):
        return None
    try:
        value = float(t)
    except ValueError:
        raise click.BadParameter(f"{text!r}: a percentage such as 5 or 'off'") from None
    if not 0 <= value < 1000:
        raise click.BadParameter(f"{text!r}: a percentage from 0 to 1000")
    return value / 100.0


def limit_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The limit and budget flags shared by ``compare`` and ``ci``."""
    opts = [
        click.option("--max-slowdown", default="5", show_default=True,
                     help="Gate: CPU-ns per delivered message may grow this many percent."),
        click.option("--max-p50-increase", default="off", show_default=True,
                     help="Gate p50 at a fixed rate too (percent); reported either way."),
        click.option("--max-p99-increase", default="off", show_default=True,
                     help="Gate p99 at a fixed rate (percent)."),
        click.option("--max-p999-increase", default="off", show_default=True,
                     help="Gate p99.9 at a fixed rate (percent)."),
        click.option("--alpha", type=float, default=DEFAULT_ALPHA, show_default=True,
                     help="False-alarm budget over every look, workload and gated metric."),
        click.option("--pass-alpha", type=float, default=DEFAULT_PASS_ALPHA, show_default=True,
                     help="Budget for a wrong PASS (a change at the limit called below it)."),
        click.option("--allow-degraded-baseline", is_flag=True,
                     help="Use baseline runs that lost messages or did not finish cleanly."),
        click.option("--allow-mixed", is_flag=True,
                     help="Compare runs of different hosts or CPU models (never of "
                     "different patterns)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def limits_from(params: dict[str, Any]) -> Limits:
    """:class:`Limits` from the flags of :func:`limit_options`; bad ones exit 2."""
    if not 0 < params["alpha"] < 1 or not 0 < params["pass_alpha"] < 1:
        fail("--alpha and --pass-alpha must be between 0 and 1")
    try:
        return Limits(parse_limit(params["max_slowdown"]), parse_limit(params["max_p50_increase"]),
                      parse_limit(params["max_p99_increase"]),
                      parse_limit(params["max_p999_increase"]), params["alpha"],
                      params["pass_alpha"])
    except click.BadParameter as exc:
        fail(exc.format_message())


def _consoles() -> tuple[Console, Console]:
    # a warning is one line whatever its length (a path, a log grep), never wrapped at 80
    err = Console(stderr=True, soft_wrap=True)
    return Console(width=None if sys.stdout.isatty() else TABLE_WIDTH), err


@click.command("compare")
@click.argument("base")
@click.argument("new")
@limit_options
def compare(base: str, new: str, **params: Any) -> None:
    """Is NEW slower than BASE beyond noise? Each is a result file, directory or glob
    (quote it). Runs whose start times show base/candidate interleaving are paired.
    Exit 0 pass or inconclusive, 1 regression, 2 error."""
    limits = limits_from(params)
    out, err = _consoles()
    try:
        code = run_gate([base], [new], limits, params, out, err)
    except (CompareError, ResultError) as exc:
        fail(str(exc))
    sys.exit(code)


DEFAULT_SUITE: dict[str, Any] = {
    "target": ["inproc"], "pubs": [1], "subs": [8], "size": [64], "rate": ["max"],
    "duration": "1s", "warmup": "300ms",
}
"""inproc 1 -> 8 in closed loop: the driver's own hot path, a few seconds per run."""


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
    spec["trials"] = 1  # blocks repeat the cells below
    return expand(spec)


def _looks(text: str) -> list[int]:
    try:
        looks = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        fail(f"--looks {text!r}: block counts such as 10,20,30")
    if not looks or looks[0] < 2:
        fail("--looks: at least 2 blocks before the first look")
    return looks


def _slowdown(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = parse_limit(text)
    except click.BadParameter as exc:
        fail(f"--candidate-slowdown: {exc.format_message()}")
    if not value:
        fail("--candidate-slowdown: a percentage above 0, such as 5%")
    return value


@click.command("ci")
@click.option("--baseline-rev", default=None, required=True,
              help="Git revision to install side by side and run as the baseline.")
@click.option("--suite", default=None, help="Workload file (as for sweep) instead of the "
              "default suite: inproc 1x8 64B closed loop, 1 s.")
@click.option("--looks", default=",".join(map(str, DEFAULT_LOOKS)), show_default=True,
              help="Blocks after which the gate looks; the last is the cap.")
@click.option("--seed", type=int, default=None,
              help="Seed of the coin flips (default: random, printed and recorded).")
@click.option("--contention", default=f"{DEFAULT_CONTENTION:.0%}", show_default=True,
              help="Redo a block in which a run waited for a CPU more than this share "
              "('off': never).")
@click.option("--max-redo", type=int, default=DEFAULT_MAX_REDO, show_default=True,
              help="Redos per contended block before it is kept (and counted).")
@click.option("--duration", "-d", default=None, help="Measured time per run [1s].")
@click.option("--warmup", "-w", default=None, help="Warm-up per run [300ms].")
@click.option("--out", "-o", default=None, help="Where runs go: OUT/base, OUT/new, "
              "OUT/ci.json [results/ci-<time>].")
@click.option("--candidate-env", multiple=True, help="KEY=VALUE for the candidate's runs only.")
@click.option("--candidate-slowdown", default=None, help="Slow the candidate on purpose by "
              "this share of each workload's own CPU-ns per message (fixed work, e.g. 5%), to "
              "check that the gate catches it.")
@limit_options
def ci(**params: Any) -> None:
    """Run paired blocks of a baseline revision and the current code, and gate them.

    Exit 0 pass (or inconclusive at the last look), 1 regression, 2 error.
    """
    limits = limits_from(params)  # bad limits fail before anything runs
    looks = _looks(params["looks"])
    slowdown = _slowdown(params["candidate_slowdown"])
    try:
        contention = parse_limit(params["contention"])
    except click.BadParameter as exc:
        fail(f"--contention: {exc.format_message()}")
    if params["max_redo"] < 0:
        fail("--max-redo cannot be negative")
    try:
        cells = _suite(params)
    except WorkloadError as exc:
        fail(str(exc))
    seed = params["seed"] if params["seed"] is not None else int.from_bytes(os.urandom(4), "big")
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out_dir = Path(params["out"] or f"results/ci-{stamp}")
    out, err = _consoles()
    env = _env_pairs(params["candidate_env"])
    err.print(f"coin-flip seed {seed} (--seed {seed} repeats the order)", highlight=False)
    with tempfile.TemporaryDirectory(prefix="msgbench-ci-") as tmp:
        err.print(f"installing revision {params['baseline_rev']}...", highlight=False)
        try:
            base = Runner(command=install_revision(params["baseline_rev"], Path(tmp)))
        except WorkloadError as exc:
            fail(str(exc))
        runners = {i: Runner(env=env) for i in range(len(cells))}
        calibration: dict[str, Any] = {}
        try:
            if slowdown is not None:
                costs, unit = calibrate(cells, base, out_dir)
                for i, cost in costs.items():
                    units = units_for(slowdown, cost, unit)
                    runners[i] = Runner(env={**env, WORK_ENV: f"{units:.6g}"})
                    calibration[cells[i].label()] = {"cpu_ns_per_msg": cost, "unit_ns": unit,
                                                     "units_per_msg": units,
                                                     "slowdown": slowdown}
                    err.print(f"{cells[i].label()}: {cost:.1f} CPU-ns/msg; +{slowdown:.0%} = "
                              f"{units:.3g} work units of {unit:.1f} ns", highlight=False)
            plan = Plan(cells, out_dir, limits, looks, seed,
                        contention if contention is not None else float("inf"),
                        params["max_redo"], calibration)
            index = {c: i for i, c in enumerate(cells)}
            report = run_ci(plan, base, lambda c: runners[index[c]],
                            lambda s: err.print(s, highlight=False))
        except CiError as exc:
            fail(str(exc))
    kept = sum(b.contended for b in report.blocks)
    err.print(f"{len(report.blocks)} blocks ({report.redone} redone for contention or a lost "
              f"run, {kept} kept although contended) in {report.elapsed_s:.0f} s; results in "
              f"{out_dir}", highlight=False)
    sys.exit(conclude(report.verdicts, report.problems, out))

"""The ``msgbench`` command line.

Bad input exits with code 2 and one line on stderr; a run that failed exits
1 (its partial result is still written); ``ok`` and ``degraded`` exit 0.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource
from rich.console import Console

from msgbench import __version__
from msgbench.api.registry import load_target, target_names
from msgbench.api.target import Pattern, TargetError, TargetOption
from msgbench.cli.console import ConsoleProgress, summary_table
from msgbench.cli.interrupts import StopSignals, Terminated, name_the_signal, save_elsewhere
from msgbench.cli.target_options import click_option, declared_options, option_values
from msgbench.results.model import STATUS_FAILED, RunResult, write
from msgbench.workload.config import (
    DEFAULT_DRAIN_TIMEOUT_S,
    DEFAULT_PROBE_TIMEOUT_S,
    DEFAULT_RPC_TIMEOUT_S,
    ConfigError,
    RunConfig,
    parse_churn,
    parse_duration,
    parse_rate,
)

EXIT_FAILED = 1
EXIT_USAGE = 2
LOG_WIDTH = 110


def _fail(message: str) -> None:
    click.echo(f"msgbench: error: {message}", err=True)
    sys.exit(EXIT_USAGE)


def _target_options() -> dict[str, TargetOption]:
    """Every option any registered target declares, by flag (see ``all_options``)."""
    try:
        return declared_options()
    except TargetError as exc:
        _fail(str(exc))
        raise AssertionError("unreachable") from exc


LAZY_COMMANDS: dict[str, str] = {
    "serve": "msgbench.cli.serve_cmd:serve",
    "report": "msgbench.cli.report_cmd:report",
    "plot": "msgbench.cli.report_cmd:plot",
    "export": "msgbench.cli.report_cmd:export",
    "sweep": "msgbench.cli.sweep_cmd:sweep",
    "compare": "msgbench.cli.compare_cmd:compare",
    "ci": "msgbench.cli.compare_cmd:ci",
    "capacity": "msgbench.cli.capacity_cmd:capacity",
}
"""Commands that live in their own modules, imported only when used (``run`` stays light)."""


def _lazy(name: str) -> click.Command | None:
    module, _, attr = LAZY_COMMANDS[name].partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None  # not part of this build
        raise
    cmd = getattr(mod, attr, None)
    return cmd if isinstance(cmd, click.Command) else None


class _Group(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        lazy = [n for n in LAZY_COMMANDS if _lazy(n) is not None]
        return sorted([*super().list_commands(ctx), "run", *lazy])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "run":
            # built on demand: its options come from every installed target, and importing
            # them all would slow down every other command (the chat servers start with one)
            return _make_run_command()
        cmd = super().get_command(ctx, cmd_name)
        if cmd is None and cmd_name in LAZY_COMMANDS:
            cmd = _lazy(cmd_name)
        return cmd

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Like click's, but a usage error is one line on stderr (exit 2), not a usage dump."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:
            hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx else ""
            _fail(f"{exc.format_message()}{hint}")
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("msgbench: aborted", err=True)
            sys.exit(EXIT_FAILED)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="msgbench")
def main() -> None:
    """Measure how messages flow through real-time messaging designs."""


def _result_path(out: Path, cfg: RunConfig) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    base = out / f"{stamp}-{cfg.target}-{cfg.pubs}x{cfg.subs}"
    path = base.with_suffix(".json")
    n = 1
    while path.exists():
        n += 1
        path = Path(f"{base}-{n}.json")
    return path


def _build_config(params: dict[str, Any], extra: dict[str, TargetOption],
                  from_env: frozenset[str] = frozenset()) -> RunConfig:
    """The run's config; options in ``from_env`` came from the environment and are
    ignored by targets that do not take them (a MSGBENCH_REDIS_URL exported for the Redis
    targets must not break an inproc run)."""
    target_name = params["target"]
    target = load_target(target_name)
    options = option_values(target, target_name, params, extra, from_env)
    procs = params["procs"]
    churn = parse_churn(params["churn"])
    return RunConfig(
        target=target_name,
        pattern=params["pattern"],
        pubs=params["pubs"],
        subs=params["subs"],
        size=params["size"],
        rate=parse_rate(params["rate"]),
        duration_s=parse_duration(params["duration"], "--duration"),
        warmup_s=parse_duration(params["warmup"], "--warmup"),
        topics=params["topics"],
        procs=None if procs in (None, "auto") else _int(procs, "--procs"),
        batch=params["batch"],
        sub_delay_s=parse_duration(params["sub_delay"], "--sub-delay"),
        churn_away_s=churn[0],
        churn_period_s=churn[1],
        timeout_s=parse_duration(params["timeout"], "--timeout"),
        inflight=params["inflight"],
        work=params["work"] or "",
        slow_worker=params["slow_worker"] or "",
        kill_worker_s=(None if params["kill_worker"] is None
                       else parse_duration(params["kill_worker"], "--kill-worker")),
        probe_timeout_s=parse_duration(params["probe_timeout"], "--probe-timeout"),
        drain_timeout_s=parse_duration(params["drain_timeout"], "--drain-timeout"),
        target_options=options,
    )


def _width(stream: Any) -> int | None:
    """Let rich size tables to a terminal, but do not squeeze them to 80 columns in a log."""
    return None if stream.isatty() else LOG_WIDTH


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{what} takes a whole number or 'auto', got {text!r}") from None


def _run(**params: Any) -> None:
    extra = _target_options()
    err = Console(stderr=True, width=_width(sys.stderr))
    stops = StopSignals()
    ctx = click.get_current_context()
    from_env = frozenset(k for k in params
                         if ctx.get_parameter_source(k) is ParameterSource.ENVIRONMENT)
    with stops.installed():
        try:
            cfg = _build_config(params, extra, from_env)
            cfg.validate()
            from msgbench.run.coordinator import Coordinator

            coordinator = Coordinator(cfg, ConsoleProgress(err, quiet=params["quiet"]))
            result = coordinator.run()
        except (ConfigError, TargetError) as exc:
            _fail(str(exc))
            return
        except Terminated as exc:
            # before the coordinator took over (or after it gave up): nothing was measured
            click.echo(f"msgbench: {exc}; nothing measured", err=True)
            sys.exit(EXIT_FAILED)
        stops.armed = False  # from here on the result is complete: write it whatever comes
        if stops.received:
            result = name_the_signal(result, stops.received)
        path = _result_path(Path(params["out"]), cfg)
        saved: Path | None = path
        try:
            write(result, path)
        except OSError as exc:
            saved = save_elsewhere(result, path, exc)
        _print_result(result, str(saved) if saved else None, params["json_out"],
                      params["quiet"], err)
    if stops.late:
        err.print(f"msgbench: {stops.late} came while the result was being written; ignored")
    if result.status == STATUS_FAILED or saved != path:
        sys.exit(EXIT_FAILED)


def _print_result(
    result: RunResult, path: str | None, json_out: bool, quiet: bool, err: Console
) -> None:
    if json_out:
        sys.stdout.write(json.dumps(result.to_json(), indent=1) + "\n")
        if not quiet:
            err.print(summary_table(result, path))
    elif quiet:
        s = result.summary
        click.echo(
            f"{result.status} delivered={s.counters.delivered} lost={s.counters.lost} "
            f"deliveries_per_s={s.deliveries_per_s:.0f} p99_ns={s.latency_ns['p99']} "
            f"result={path}"
        )
    else:
        Console(width=_width(sys.stdout)).print(summary_table(result, path))


def _make_run_command() -> click.Command:
    params: list[click.Parameter] = [
        click.Option(
            ["--target", "-t"],
            default="inproc",
            show_default=True,
            help="Design under test (see `msgbench targets`).",
        ),
        click.Option(
            ["--pattern"],
            type=click.Choice(["broadcast", "tasks", "rpc"]),
            default="broadcast",
            show_default=True,
            help="broadcast: every message to every subscriber of its topic; tasks: competing "
            "consumers, each message to one subscriber of its topic's group; rpc: publishers "
            "are requesters, subscribers answer them.",
        ),
        click.Option(["--pubs", "-p"], type=int, default=1, show_default=True,
                     help="Publishers (producers, requesters)."),
        click.Option(["--subs", "-s"], type=int, default=1, show_default=True,
                     help="Subscribers (workers of a group, responders)."),
        click.Option(
            ["--size"],
            type=int,
            default=64,
            show_default=True,
            help="Message size in bytes, header included.",
        ),
        click.Option(
            ["--rate", "-r"],
            default="max",
            show_default=True,
            help="Messages/s per publisher (10000, 50k, 1M) or 'max' for closed loop.",
        ),
        click.Option(
            ["--duration", "-d"],
            default="10s",
            show_default=True,
            help="Measured time: 500ms, 10s, 2m.",
        ),
        click.Option(
            ["--warmup", "-w"],
            default="2s",
            show_default=True,
            help="Unmeasured time before the measurement.",
        ),
        click.Option(
            ["--topics"],
            type=int,
            default=1,
            show_default=True,
            help="Topics (channels); subscribers spread over them round-robin.",
        ),
        click.Option(
            ["--procs"],
            default="auto",
            show_default=True,
            help="Worker processes the clients are grouped into.",
        ),
        click.Option(
            ["--batch"],
            type=int,
            default=0,
            help="Messages per publish call (0: 128 in closed loop, else all due).",
        ),
        click.Option(
            ["--sub-delay"],
            default="0s",
            show_default=True,
            help="Simulated processing time per received message (a slow subscriber).",
        ),
        click.Option(
            ["--churn"],
            default=None,
            help="Subscriber churn AWAY/PERIOD (500ms/2s): each subscriber disconnects for AWAY "
            "every PERIOD, staggered.",
        ),
        click.Option(
            ["--work"],
            default=None,
            help="tasks: service time of each task: fixed:1ms, exp:1ms (exponential, that "
            "mean) or lognormal:1ms,0.5 (that mean and sigma). Default: none.",
        ),
        click.Option(
            ["--slow-worker"],
            default=None,
            help="tasks: SUB:xFACTOR (0:x10): that subscriber's tasks take FACTOR times as long.",
        ),
        click.Option(
            ["--kill-worker"],
            default=None,
            help="tasks: SIGKILL the first subscriber worker process AT (2s) into the measured "
            "window; a reliable design delivers its unfinished tasks again.",
        ),
        click.Option(
            ["--timeout"],
            default=f"{DEFAULT_RPC_TIMEOUT_S:g}s",
            show_default=True,
            help="rpc: a request with no reply this long after it left has timed out.",
        ),
        click.Option(
            ["--inflight"],
            type=int,
            default=0,
            show_default=True,
            help="rpc, with --rate max: closed loop with N requests outstanding per requester "
            "(0: open loop, unbounded).",
        ),
        click.Option(
            ["--probe-timeout"],
            default=f"{DEFAULT_PROBE_TIMEOUT_S:g}s",
            show_default=True,
            help="Give up when subscribers cannot hear publishers.",
        ),
        click.Option(
            ["--drain-timeout"],
            default=f"{DEFAULT_DRAIN_TIMEOUT_S:g}s",
            show_default=True,
            help="Quiet time after which undelivered is lost.",
        ),
        click.Option(
            ["--out", "-o"],
            default="results",
            show_default=True,
            type=click.Path(file_okay=False),
            help="Directory for the result file.",
        ),
        click.Option(
            ["--json", "json_out"],
            is_flag=True,
            help="Print the result document on stdout (progress goes to stderr).",
        ),
        click.Option(["--quiet", "-q"], is_flag=True, help="No progress; one summary line."),
    ]
    params += [click_option(o) for o in _target_options().values()]
    return click.Command(
        "run", callback=_run, params=params, help="Run one benchmark and write its result file."
    )




@main.command("targets")
def targets_cmd() -> None:
    """List the targets, whether each can run here, and what it needs if not."""
    for name in target_names():
        try:
            target = load_target(name)
            avail = target.check()
        except TargetError as exc:
            click.echo(f"{name:16} {'unavailable':8} {exc}")  # what to install, or why
            continue
        state = "ready" if avail.ok else "missing"
        click.echo(f"{name:16} {state:8} {target.description}")
        click.echo(f"{'':16} {'':8} {avail.detail}")
        carried = ", ".join(p.value for p in Pattern if p in target.patterns)
        click.echo(f"{'':16} {'':8} patterns: {carried}")
        for opt in target.options:
            click.echo(f"{'':16} {'':8} {opt.flag}: {opt.help}")

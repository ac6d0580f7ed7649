"""``msgbench run``: one benchmark, its result file and its summary.

The driver's options are generated from their declarations
(:mod:`msgbench.workload.run_options`), the targets' from theirs
(:mod:`msgbench.cli.target_options`); nothing here names an option of either but the
output ones it acts on. Bad input exits 2 with one line; a failed run exits 1.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource
from rich.console import Console

from msgbench.api.registry import load_target
from msgbench.api.target import TargetError, TargetOption
from msgbench.cli.console import ConsoleProgress, summary_table
from msgbench.cli.interrupts import StopSignals, Terminated, name_the_signal, save_elsewhere
from msgbench.cli.report_cmd import fail
from msgbench.cli.target_options import click_option, declared_options, option_values
from msgbench.results.model import STATUS_FAILED, RunResult, write
from msgbench.workload.config import ConfigError, RunConfig
from msgbench.workload.run_options import RunOption, config_values, run_options

EXIT_FAILED = 1
LOG_WIDTH = 110
RUN_HELP = "Run one benchmark and write its result file."


def target_options() -> dict[str, TargetOption]:
    """Every option any registered target declares, by flag (see ``all_options``); two
    targets that clash are one line and exit 2."""
    try:
        return declared_options()
    except TargetError as exc:
        fail(str(exc))


def option(opt: RunOption) -> click.Option:
    """``opt`` as a click option: its flags, kind, default and pattern-prefixed help."""
    decls = [opt.flag, *([opt.short] if opt.short else []), opt.dest]
    kind = opt.kind.cli_type
    if kind == "flag":
        return click.Option(decls, is_flag=True, default=bool(opt.cli_default),
                            help=opt.help_text())
    value_type: Any = (click.Choice(opt.choices) if opt.choices
                       else int if kind == "int"
                       else click.Path(file_okay=False) if kind == "path"
                       else str)
    return click.Option(decls, type=value_type, default=opt.cli_default,
                        show_default=opt.cli_default is not None, metavar=opt.metavar,
                        help=opt.help_text())


def make_run_command() -> click.Command:
    """The ``run`` command: the driver's declared options, then every target's."""
    params: list[click.Parameter] = [option(o) for o in run_options()]
    params += [click_option(o) for o in target_options().values()]
    return click.Command("run", callback=_run, params=params, help=RUN_HELP)


def build_config(params: dict[str, Any], extra: dict[str, TargetOption],
                 from_env: frozenset[str] = frozenset()) -> RunConfig:
    """The run's config from the parsed parameters; options in ``from_env`` came from the
    environment and are ignored by targets that do not take them (a MSGBENCH_REDIS_URL
    exported for the Redis targets must not break an inproc run). Raises
    :class:`ConfigError` or :class:`TargetError` with one line."""
    values = config_values(params)
    target_name = values["target"]
    options = option_values(load_target(target_name), target_name, params, extra, from_env)
    return RunConfig(**values, target_options=options)


def _result_path(out: Path, cfg: RunConfig) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    base = out / f"{stamp}-{cfg.target}-{cfg.pubs}x{cfg.subs}"
    path = base.with_suffix(".json")
    n = 1
    while path.exists():
        n += 1
        path = Path(f"{base}-{n}.json")
    return path


def _width(stream: Any) -> int | None:
    """Let rich size tables to a terminal, but do not squeeze them to 80 columns in a log."""
    return None if stream.isatty() else LOG_WIDTH


def _run(**params: Any) -> None:
    extra = target_options()
    err = Console(stderr=True, width=_width(sys.stderr))
    stops = StopSignals()
    ctx = click.get_current_context()
    from_env = frozenset(k for k in params
                         if ctx.get_parameter_source(k) is ParameterSource.ENVIRONMENT)
    with stops.installed():
        try:
            cfg = build_config(params, extra, from_env)
            cfg.validate()
            from msgbench.run.coordinator import Coordinator

            coordinator = Coordinator(cfg, ConsoleProgress(err, quiet=params["quiet"]))
            result = coordinator.run()
        except (ConfigError, TargetError) as exc:
            fail(str(exc))
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

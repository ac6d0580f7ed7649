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

from msgbench.api.registry import load_target, load_target_class
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


class RunCommand(click.Command):
    """``msgbench run``, whose options are the driver's and those of the target it runs.

    Importing every installed target for its options costs each run about 0.15 s before
    anything is measured, so the command line is parsed with the chosen target's options
    only (``-t``, else the default). Every target's are loaded where they are needed: for
    ``--help``, a target that does not load (its error is the one to show), and an option
    the chosen target does not take (so that it is refused naming the target, not as an
    unknown option).
    """

    def __init__(self) -> None:
        super().__init__("run", callback=_run, help=RUN_HELP)
        self.extra: dict[str, TargetOption] = {}
        """The target options the command line was parsed with, by flag."""
        self._use({})

    def _use(self, extra: dict[str, TargetOption]) -> None:
        self.extra = extra
        self.params = [*(option(o) for o in run_options()),
                       *(click_option(o) for o in extra.values())]

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Parse ``args`` with the options of the target they name (see the class)."""
        own = None if HELP_FLAGS & set(args) else _own_options(_target_named(args))
        if own is not None:
            self._use(own)
            try:
                return super().parse_args(ctx, list(args))
            except click.NoSuchOption:
                ctx.params.clear()  # parsed again below, with every target's options
        self._use(target_options())
        return super().parse_args(ctx, list(args))


HELP_FLAGS = frozenset({"--help", "-h"})


def _target_named(args: list[str]) -> str:
    """The ``-t`` / ``--target`` value among ``args`` (the last one wins, as in click),
    else the option's default."""
    name = next(o.cli_default for o in run_options() if o.flag == "--target")
    for i, arg in enumerate(args):
        if arg in ("-t", "--target") and i + 1 < len(args):
            name = args[i + 1]
        elif arg.startswith("--target="):
            name = arg.partition("=")[2]
        elif arg.startswith("-t") and len(arg) > 2 and not arg.startswith("--"):
            name = arg[2:]
    return str(name)


def _own_options(name: str) -> dict[str, TargetOption] | None:
    """The options of target ``name`` by flag; None when it does not load."""
    try:
        return {o.flag: o for o in load_target_class(name).options}
    except TargetError:
        return None


def make_run_command() -> click.Command:
    """The ``run`` command (see :class:`RunCommand`)."""
    return RunCommand()


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
    ctx = click.get_current_context()
    command = ctx.command
    extra = command.extra if isinstance(command, RunCommand) else target_options()
    err = Console(stderr=True, width=_width(sys.stderr))
    stops = StopSignals()
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

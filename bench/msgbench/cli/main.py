"""The ``msgbench`` command line.

Bad input exits with code 2 and one line on stderr; a run that failed exits
1 (its partial result is still written); ``ok`` and ``degraded`` exit 0.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import click

from msgbench import __version__
from msgbench.api.registry import load_target, target_names
from msgbench.api.target import Pattern, TargetError

EXIT_FAILED = 1
EXIT_USAGE = 2


def _fail(message: str) -> None:
    click.echo(f"msgbench: error: {message}", err=True)
    sys.exit(EXIT_USAGE)


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
            from msgbench.cli.run_cmd import make_run_command

            return make_run_command()
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

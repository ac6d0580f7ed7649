"""The options targets declare, as ``msgbench run`` options and as a run's values.

Each :class:`~msgbench.api.target.TargetOption` is declared once, by its target; this
module turns it into a click option and reads the chosen target's values back out of
the parsed command line. Nothing here knows any target by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from msgbench.api.registry import all_options
from msgbench.api.target import Target, TargetError, TargetOption
from msgbench.workload.config import ConfigError


def declared_options() -> dict[str, TargetOption]:
    """Every option any registered target declares, by flag (see ``all_options``);
    raises :class:`~msgbench.api.target.TargetError` when two targets clash."""
    return all_options()


def click_option(opt: TargetOption) -> click.Option:
    """``opt`` as a ``msgbench run`` option; its default stays None so that a value the
    user did not give can be told from one they did. Its type, bounds and environment
    variable are the declaration's: click refuses a bad value in one line."""
    if opt.kind == "flag":
        return click.Option([opt.flag], is_flag=True, default=None, help=opt.help)
    kind: Any = str
    if opt.choices:
        kind = click.Choice(opt.choices)
    elif opt.kind == "int":
        kind = click.IntRange(opt.min, opt.max)
    # an option that may hold a password can come from the environment instead: a command
    # line is visible to every user of the machine
    help_text = f"{opt.help} (or set {opt.env})" if opt.env else opt.help
    return click.Option([opt.flag], type=kind, default=None, help=help_text, envvar=opt.env)


def option_values(target: Target, target_name: str, params: Mapping[str, Any],
                  extra: Mapping[str, TargetOption],
                  from_env: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The chosen target's option values (its defaults where not given), by key.

    Raises :class:`ConfigError` for an option given on the command line that the target
    does not take; options in ``from_env`` came from the environment and are ignored by
    targets that do not take them (a MSGBENCH_REDIS_URL exported for the Redis targets
    must not break an inproc run)."""
    own = {o.flag: o for o in target.options}
    options: dict[str, Any] = {}
    for flag, opt in extra.items():
        value = params.get(opt.key)
        if flag in own:
            try:
                options[opt.key] = own[flag].value({opt.key: value})
            except TargetError as exc:
                raise ConfigError(str(exc)) from None
        elif value is not None and opt.key not in from_env:
            raise ConfigError(f"{flag} does not apply to target {target_name!r}")
    return options

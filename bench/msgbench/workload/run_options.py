"""Every ``msgbench run`` option of the driver, declared once.

The rule: an option that sets :class:`~msgbench.workload.config.RunConfig` fields is declared
in that field's metadata (``field(default=..., metadata=run_option(...))``); the command-line
default is derived from the field's default through the option's :class:`ValueKind`. An
option that fills more than one field (``--churn AWAY/PERIOD``) is declared on the first and
names the others in ``also``; they carry no declaration of their own. A field no option sets
is marked :func:`internal`, saying who fills it. Options that set no field (where the result
goes, how it is printed) are :data:`OUTPUT_OPTIONS`, below. Targets declare their own options
(:class:`~msgbench.api.target.TargetOption`); they are not here.

The click options of ``msgbench run``, the config built from its parameters, the help's
pattern prefixes, the pattern checks and ``docs/run-options.md`` are all generated from these
declarations. This module knows no click.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from msgbench.api.target import Pattern
from msgbench.workload.values import DIRECTORY, SWITCH, TEXT, ConfigError, ValueKind

if TYPE_CHECKING:
    from msgbench.workload.config import RunConfig

METADATA_KEY = "msgbench.run_option"


@dataclass(frozen=True)
class RunOption:
    """One ``msgbench run`` option.

    ``patterns``: the patterns it applies to (empty: all); outside them a value other than
    the default is refused (unless ``strict`` is False) and the help says where it applies.
    ``fields``: the config fields it sets, in the order its kind's parser returns them
    (filled in from where it is declared). ``cli_default``: what the command line assumes
    when it is not given (derived from the field's default for a field option).
    """

    flag: str
    help: str
    kind: ValueKind = TEXT
    short: str | None = None
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    patterns: tuple[Pattern, ...] = ()
    strict: bool = True
    hint: str = ""
    """Said after "applies to --pattern ..." when it is refused for another pattern."""
    details: str = ""
    """What the option means beyond its one-line help, for docs/run-options.md."""
    name: str | None = None
    """The parsed parameter's name, where the flag's own (``--sub-delay`` -> ``sub_delay``)
    will not do."""
    also: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    cli_default: Any = None

    @property
    def dest(self) -> str:
        """The name of its value among the parsed command-line parameters."""
        return self.name or self.flag.lstrip("-").replace("-", "_")

    def help_text(self) -> str:
        """The one-line help, prefixed with the patterns it applies to (``tasks, rpc: ...``)."""
        if not self.patterns:
            return self.help
        return f"{', '.join(p.value for p in self.patterns)}: {self.help}"


@dataclass(frozen=True)
class Internal:
    """A config field no option sets, and who fills it instead."""

    filled_by: str


def run_option(**declaration: Any) -> dict[str, RunOption]:
    """Field metadata declaring the option that sets this field (see :class:`RunOption`)."""
    return {METADATA_KEY: RunOption(**declaration)}


def internal(filled_by: str) -> dict[str, Internal]:
    """Field metadata marking a field no option sets; ``filled_by`` says what does."""
    return {METADATA_KEY: Internal(filled_by)}


OUTPUT_OPTIONS: tuple[RunOption, ...] = (
    RunOption("--out", "Directory for the result file.", kind=DIRECTORY, short="-o",
              cli_default="results"),
    RunOption("--json", "Print the result document on stdout (progress goes to stderr).",
              kind=SWITCH, name="json_out", cli_default=False,
              details="The summary table goes to stderr then, unless `--quiet`."),
    RunOption("--quiet", "No progress; one summary line.", kind=SWITCH, short="-q",
              cli_default=False),
)
"""The options of ``msgbench run`` that set no config field."""


def field_options(config: type[Any]) -> tuple[RunOption, ...]:
    """The options declared in the fields of the dataclass ``config``, in field order, each
    with its ``fields`` and ``cli_default`` filled in.

    Raises :class:`TypeError` when a field is set by no option and not marked internal, or
    by more than one option: the declarations are the program's, not the user's."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    claimed: dict[str, str] = {}
    out: list[RunOption] = []
    for f in fields.values():
        decl = f.metadata.get(METADATA_KEY)
        if isinstance(decl, Internal):
            claimed.setdefault(f.name, "internal")
        if not isinstance(decl, RunOption):
            continue
        names = (f.name, *decl.also)
        for name in names:
            if name not in fields:
                raise TypeError(f"{decl.flag} sets {name}, which {config.__name__} lacks")
            if name in claimed:
                raise TypeError(f"{name} is set by both {claimed[name]} and {decl.flag}")
            claimed[name] = decl.flag
        defaults = [_default(fields[n]) for n in names]
        shown = decl.kind.show(defaults[0] if len(names) == 1 else tuple(defaults))
        out.append(dataclasses.replace(decl, fields=names, cli_default=shown))
    unclaimed = sorted(set(fields) - set(claimed))
    if unclaimed:
        raise TypeError(f"{config.__name__} fields no option sets and not marked internal: "
                        + ", ".join(unclaimed))
    return tuple(out)


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise TypeError(f"{f.name} has no default: every run option has one")


@functools.cache
def config_options() -> tuple[RunOption, ...]:
    """The options that set :class:`~msgbench.workload.config.RunConfig` fields."""
    from msgbench.workload.config import RunConfig  # it declares its options with this module

    return field_options(RunConfig)


def run_options() -> tuple[RunOption, ...]:
    """Every driver option of ``msgbench run``: the config's, then :data:`OUTPUT_OPTIONS`."""
    return (*config_options(), *OUTPUT_OPTIONS)


def config_values(params: Mapping[str, Any]) -> dict[str, Any]:
    """The config fields from parsed command-line parameters (by :attr:`RunOption.dest`),
    each through its option's parser; raises :class:`ConfigError` naming the flag."""
    out: dict[str, Any] = {}
    for opt in config_options():
        value = opt.kind.parse(params.get(opt.dest, opt.cli_default), opt.flag)
        if len(opt.fields) == 1:
            out[opt.fields[0]] = value
        else:
            out.update(zip(opt.fields, value, strict=True))
    return out


def check_patterns(cfg: RunConfig) -> None:
    """Refuse an option given a value other than its default under a pattern it does not
    apply to (``--slow-worker`` with ``--pattern rpc``)."""
    pattern = Pattern(cfg.pattern)
    for opt in config_options():
        if not opt.patterns or not opt.strict or pattern in opt.patterns:
            continue
        given = opt.kind.show(_values(cfg, opt))
        if given != opt.cli_default:
            names = " and ".join(p.value for p in opt.patterns)
            only = " only" if len(opt.patterns) == 1 else ""
            hint = f" {opt.hint}" if opt.hint else ""
            raise ConfigError(f"{opt.flag} applies to --pattern {names}{only}{hint}")


def _values(cfg: RunConfig, opt: RunOption) -> Any:
    values = tuple(getattr(cfg, name) for name in opt.fields)
    return values[0] if len(values) == 1 else values

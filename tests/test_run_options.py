"""Each ``msgbench run`` option is declared once, and the CLI, the config and the docs page
are generated from the declarations (workload/run_options.py)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from msgbench.cli import docgen
from msgbench.cli.main import main as cli_group
from msgbench.cli.run_cmd import build_config, make_run_command, option, target_options
from msgbench.workload.config import ConfigError, RunConfig
from msgbench.workload.run_options import (
    METADATA_KEY,
    Internal,
    RunOption,
    config_options,
    field_options,
    internal,
    run_option,
    run_options,
)
from msgbench.workload.values import CHURN, DURATION, WHOLE


def _config(*argv: str) -> RunConfig:
    """``argv`` parsed by the generated ``run`` command and turned into its config."""
    cmd = make_run_command()
    ctx = cmd.make_context("run", list(argv))
    return build_config(dict(ctx.params), target_options())


def test_the_page_is_current() -> None:
    assert docgen.PAGE.exists(), f"run `{docgen.COMMAND}` to write {docgen.PAGE}"
    assert docgen.PAGE.read_text(encoding="utf-8") == docgen.render(), \
        f"{docgen.PAGE} is stale: run `{docgen.COMMAND}`"


def test_check_says_stale_in_one_line_and_exits_1(tmp_path: Path) -> None:
    page = tmp_path / "run-options.md"
    runner = CliRunner()
    assert runner.invoke(docgen.main, ["--path", str(page)]).exit_code == 0
    assert runner.invoke(docgen.main, ["--check", "--path", str(page)]).exit_code == 0
    page.write_text(page.read_text().replace("| `--duration`", "| `--durations`"))
    stale = runner.invoke(docgen.main, ["--check", "--path", str(page)])
    assert stale.exit_code == 1
    assert len(stale.stderr.strip().splitlines()) == 1 and "stale" in stale.stderr
    missing = runner.invoke(docgen.main, ["--check", "--path", str(tmp_path / "nope.md")])
    assert missing.exit_code == 1 and "missing" in missing.stderr


def test_the_page_lists_every_option_with_its_default_and_patterns() -> None:
    text = docgen.render()
    for opt in run_options():
        row = next((line for line in text.splitlines() if line.startswith(f"| `{opt.flag}`")),
                   None)
        assert row is not None, opt.flag
        if opt.cli_default is not None and opt.kind.cli_type != "flag":
            assert f"`{opt.cli_default}`" in row, (opt.flag, row)
        for p in opt.patterns:
            assert p.value in row, (opt.flag, row)


def test_every_config_field_is_set_by_exactly_one_option_or_internal() -> None:
    set_by: dict[str, list[str]] = {}
    for opt in config_options():
        for name in opt.fields:
            set_by.setdefault(name, []).append(opt.flag)
    for f in dataclasses.fields(RunConfig):
        decl = f.metadata.get(METADATA_KEY)
        if isinstance(decl, Internal):
            assert f.name not in set_by, f.name
        else:
            assert len(set_by.get(f.name, [])) == 1, (f.name, set_by.get(f.name))
    flags = [o.flag for o in run_options()]
    assert len(flags) == len(set(flags))


def test_a_field_no_option_sets_is_refused() -> None:
    @dataclass(frozen=True)
    class Forgotten:
        a: int = field(default=1, metadata=run_option(flag="--a", help="A.", kind=WHOLE))
        b: int = 2

    with pytest.raises(TypeError, match="b"):
        field_options(Forgotten)

    @dataclass(frozen=True)
    class Twice:
        a: float = field(default=0.0, metadata=run_option(
            flag="--a", help="A.", kind=CHURN, also=("b",)))
        b: float = field(default=0.0, metadata=run_option(flag="--b", help="B.",
                                                          kind=DURATION))
        c: int = field(default=0, metadata=internal("tests"))

    with pytest.raises(TypeError, match="both"):
        field_options(Twice)


def test_each_default_on_the_command_line_is_the_fields_default() -> None:
    """The command-line default is derived from the field's: parsing it gives that back."""
    assert _config() == RunConfig(target_options=_config().target_options)
    for opt in config_options():
        parsed = opt.kind.parse(opt.cli_default, opt.flag)
        values = parsed if len(opt.fields) > 1 else (parsed,)
        defaults = tuple(getattr(RunConfig(), n) for n in opt.fields)
        assert values == defaults, opt.flag


@pytest.mark.parametrize(("argv", "expected"), [
    (("--procs", "auto"), {"procs": None}),
    (("--procs", "3"), {"procs": 3}),
    (("--rate", "max"), {"rate": None}),
    (("-r", "50k"), {"rate": 50_000.0}),
    (("--churn", "500ms/2s"), {"churn_away_s": 0.5, "churn_period_s": 2.0}),
    (("-d", "500ms", "-w", "0s"), {"duration_s": 0.5, "warmup_s": 0.0}),
    (("--pattern", "tasks", "--work", "fixed:1ms", "--kill-worker", "2s"),
     {"work": "fixed:1ms", "kill_worker_s": 2.0}),
    (("-p", "2", "-s", "4", "--topics", "2"), {"pubs": 2, "subs": 4, "topics": 2}),
])
def test_the_generated_cli_accepts_what_it_did(argv: tuple[str, ...],
                                               expected: dict[str, Any]) -> None:
    cfg = _config(*argv)
    cfg.validate()
    assert {k: getattr(cfg, k) for k in expected} == expected


@pytest.mark.parametrize(("argv", "says"), [
    (("--duration", "5x"), "invalid --duration '5x'"),
    (("--procs", "many"), "--procs takes a whole number or 'auto'"),
    (("--churn", "500ms"), "invalid --churn '500ms'"),
    (("--rate", "fast"), "invalid rate 'fast'"),
    (("--kill-worker", "2s"), "--kill-worker applies to --pattern tasks and rpc"),
    (("--pattern", "rpc", "--slow-worker", "0:x2"), "--slow-worker applies to --pattern tasks"),
])
def test_the_generated_cli_refuses_what_it_did(argv: tuple[str, ...], says: str) -> None:
    with pytest.raises(ConfigError, match=says.replace("(", r"\(")):
        _config(*argv).validate()


def test_an_option_for_some_patterns_may_be_lenient() -> None:
    """``--timeout`` is declared for rpc but, as before, only ignored elsewhere."""
    _config("--timeout", "2s").validate()


def test_a_bad_duration_is_one_line_and_exit_2(run_cli: Any) -> None:
    r = run_cli("run", "--duration", "5x", timeout=30)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert lines == ["msgbench: error: invalid --duration '5x': use a number with a unit, "
                     "e.g. 500ms, 10s, 2m"], r.stderr
    assert not r.result_files()


def test_run_help_lists_every_declared_flag_with_its_patterns() -> None:
    out = CliRunner().invoke(cli_group, ["run", "--help"], terminal_width=200)
    assert out.exit_code == 0, out.output
    for opt in run_options():
        assert opt.flag in out.output, opt.flag
        if opt.short:
            assert f"{opt.short}, {opt.flag}" in out.output, opt.short
        assert opt.help_text()[:40] in out.output, opt.flag
    assert "tasks, rpc: Service time" not in out.output  # the prefix is the declaration's
    assert "tasks, rpc: service time of each task" in out.output


def test_a_literal_percent_sign_in_help_renders() -> None:
    decl = RunOption("--share", "At most 50% of the time; %(default)s stays as typed.",
                     kind=WHOLE, cli_default=5)
    cmd = click.Command("x", params=[option(decl)], callback=lambda **_: None)
    out = CliRunner().invoke(cmd, ["--help"], terminal_width=200)
    assert out.exit_code == 0, out.output
    assert "At most 50% of the time; %(default)s stays as typed." in out.output

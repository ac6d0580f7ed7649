"""The README and docs/ stay true to the CLI: every command they show parses, every link resolves.

Every ``msgbench ...`` command line in a fenced ``sh`` / ``console`` block of README.md and
docs/**/*.md is resolved through the real click group (``msgbench.cli.main:main``) down to its
subcommand and parsed with ``make_context``: an unknown command or option, a bad choice or a
missing argument fails, naming the file and line. A ``run`` command must also pass what
``run`` checks before it starts anything (the config's rules, an option of another target,
a pattern the target does not carry, the target's option check). Nothing is run, so commands
that need a server, a cluster or a baseline revision are checked like any other; options that
targets add later are known to ``run`` as soon as their target is installed. Every relative
link must point to an existing file and, with a ``#fragment`` into a Markdown file, to one of
its headings.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from msgbench.api.registry import load_target
from msgbench.api.target import Pattern, TargetError
from msgbench.cli.main import main as cli_group
from msgbench.cli.run_cmd import build_config, target_options
from msgbench.workload.config import ConfigError

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
COMMAND_LANGS = {"sh", "shell", "bash", "console"}
FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
LINK = re.compile(r"(?<!!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
SEPARATORS = {"&&", "||", ";", "|", "&"}
REDIRECTS = {">", ">>", "<", "2>", "&>"}


@dataclass(frozen=True)
class Command:
    path: Path
    line: int
    text: str
    argv: tuple[str, ...]

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _code_lines(path: Path) -> Iterator[tuple[int, str, str]]:
    """(line number, language, text) of every line inside a fenced block."""
    fence: str | None = None
    lang = ""
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = FENCE.match(line)
        if fence is None:
            if m:
                fence, lang = m.group(1), m.group(2).lower()
            continue
        if m and m.group(1).startswith(fence[0]) and len(m.group(1)) >= len(fence) \
                and not m.group(2):
            fence = None
            continue
        yield no, lang, line


def _shell_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Logical command lines (backslash continuations joined) of sh / console blocks."""
    pending: tuple[int, str] | None = None
    for no, lang, raw in _code_lines(path):
        if lang not in COMMAND_LANGS:
            pending = None
            continue
        line = raw.strip()
        if pending is None:
            if lang == "console":
                if not line.startswith("$ "):
                    continue  # output, not a command
                line = line[2:]
            pending = (no, "")
        start, text = pending
        if line.endswith("\\"):
            pending = (start, text + line[:-1] + " ")
            continue
        pending = None
        yield start, text + line


def _commands(path: Path, no: int, text: str) -> Iterator[Command]:
    """Every ``msgbench`` invocation of one shell line (``a && msgbench ...``, ``X=1 msgbench``)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError as exc:
        pytest.fail(f"{_rel(path)}:{no}: cannot split the shell line ({exc}): {text}")
    segment: list[str] = []
    for tok in [*tokens, ";"]:
        if tok not in SEPARATORS:
            segment.append(tok)
            continue
        words = segment
        segment = []
        while words and ASSIGNMENT.match(words[0]):
            words = words[1:]
        if not words or words[0] != "msgbench":
            continue
        argv: list[str] = []
        skip = False
        for w in words[1:]:
            if skip:
                skip = False
            elif w in REDIRECTS:
                skip = True
            else:
                argv.append(w)
        yield Command(path, no, text, tuple(argv))


def _all_commands() -> list[Command]:
    return [c for path in DOCS for no, text in _shell_lines(path)
            for c in _commands(path, no, text)]


COMMANDS = _all_commands()


def _parse(argv: tuple[str, ...]) -> click.Context | None:
    """Resolve the subcommand through the click group and parse its arguments; run nothing.

    The parsed context, or None for an eager option (``--help``, ``--version``)."""
    cmd: click.Command = cli_group
    ctx = click.Context(cli_group, info_name="msgbench")
    args = list(argv)
    while isinstance(cmd, click.Group) and args and not args[0].startswith("-"):
        name = args.pop(0)
        sub = cmd.get_command(ctx, name)
        if sub is None:
            raise click.UsageError(f"no such command {name!r}", ctx)
        cmd = sub
        ctx = click.Context(cmd, info_name=name, parent=ctx)
    try:
        return cmd.make_context(ctx.info_name, args, parent=ctx.parent)
    except click.exceptions.Exit as done:  # --help, --version: eager, and fine
        if done.exit_code != 0:
            raise
        return None


def _check_run(params: dict[str, object]) -> None:
    """What ``msgbench run`` checks before it starts anything: the config's own rules, options
    that do not apply to the target, the pattern against the target's patterns, and the
    target's option check. Not whether its server is installed: that is the machine's, not
    the docs'."""
    cfg = build_config(dict(params), target_options())
    cfg.validate()
    target = load_target(cfg.target)
    if Pattern(cfg.pattern) not in target.patterns:
        raise TargetError(f"target {cfg.target!r} does not carry the {cfg.pattern} pattern")
    target.validate(cfg.target_options)


def test_the_docs_show_commands() -> None:
    files = {c.path for c in COMMANDS}
    assert ROOT / "README.md" in files
    assert len(COMMANDS) >= 40, [c.where() for c in COMMANDS]
    shown = {c.argv[0] for c in COMMANDS if c.argv}
    assert {"run", "report", "capacity", "ci", "compare", "sweep", "serve"} <= shown


@pytest.mark.parametrize("command", COMMANDS, ids=[c.where() for c in COMMANDS])
def test_command_parses(command: Command) -> None:
    shown = f"{command.where()}: `msgbench {' '.join(command.argv)}`"
    try:
        ctx = _parse(command.argv)
    except click.UsageError as exc:
        pytest.fail(f"{shown} is refused by the CLI: {exc.format_message()}")
    if ctx is not None and ctx.command.name == "run":
        try:
            _check_run(ctx.params)
        except (ConfigError, TargetError) as exc:
            pytest.fail(f"{shown} would be refused before it starts: {exc}")


def test_a_bad_command_is_caught() -> None:
    """The check is real: an unknown option, a bad choice and an unknown command fail."""
    refused: list[tuple[str, ...]] = [("run", "--no-such-option"), ("run", "--pattern", "gossip"),
                                      ("frobnicate",), ("serve", "irc"), ("report",)]
    for argv in refused:
        with pytest.raises(click.UsageError):
            _parse(argv)
    ctx = _parse(("run", "-t", "zmq", "--zmq-mode", "proxy", "--subs", "2"))
    assert ctx is not None
    _check_run(ctx.params)
    invalid: list[tuple[str, ...]] = [
        ("run", "-t", "zmq", "--amqp-ack", "each"),  # another target's option
        ("run", "-t", "redis", "--pattern", "tasks"),  # a pattern it does not carry
        ("run", "--pattern", "tasks", "--kill-worker", "20s"),  # outside the measured window
    ]
    for argv in invalid:
        ctx = _parse(argv)
        assert ctx is not None
        with pytest.raises((ConfigError, TargetError)):
            _check_run(ctx.params)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    in_code = {no for no, _, _ in _code_lines(path)}
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m or no in in_code:
            continue
        slug = _slug(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _links(path: Path) -> Iterator[tuple[int, str]]:
    in_code = {no for no, _, _ in _code_lines(path)}
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if no in in_code:
            continue
        for m in LINK.finditer(re.sub(r"`[^`]*`", "``", line)):
            yield no, m.group(1)


def test_relative_links_resolve() -> None:
    broken = []
    checked = 0
    for path in DOCS:
        for no, target in _links(path):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue  # https:, mailto:
            file_part, _, fragment = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            checked += 1
            if not dest.exists():
                broken.append(f"{_rel(path)}:{no}: {target} (no such file)")
            elif fragment and dest.suffix == ".md" and fragment not in _anchors(dest):
                broken.append(f"{_rel(path)}:{no}: {target} (no heading #{fragment})")
    assert checked >= 30
    assert not broken, "\n".join(broken)

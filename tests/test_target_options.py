"""A target's options are declared once (:class:`TargetOption`): bounds, choices and
secrecy there are what the CLI enforces, what a target reads, and what two targets
sharing a flag must agree on."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from conftest import CliRun
from msgbench.api import registry
from msgbench.api.target import Target, TargetError, TargetOption

COUNT = TargetOption("--count", "how many", default=4, kind="int", min=1, max=9)
MODE = TargetOption("--mode", "which", default="a", choices=("a", "b"))
SWITCH = TargetOption("--on", "a switch", default=False, kind="flag")


def test_a_declared_option_reads_its_value_checked_and_its_default_when_absent() -> None:
    assert COUNT.number({}) == 4 and COUNT.number({"count": "7"}) == 7
    assert MODE.value({"mode": None}) == "a" and MODE.value({"mode": "b"}) == "b"
    assert SWITCH.value({}) is False and SWITCH.value({"on": True}) is True
    for options, says in (({"count": 0}, "at least 1"), ({"count": 10}, "at most 9"),
                          ({"count": "x"}, "whole number"), ({"count": True}, "whole number"),
                          ({"mode": "c"}, "one of a, b"), ({"on": "yes"}, "switch")):
        with pytest.raises(TargetError, match=says):
            (COUNT if "count" in options else MODE if "mode" in options else SWITCH).value(
                options)
    with pytest.raises(TypeError):
        MODE.number({})


def test_a_secret_option_has_its_environment_variable() -> None:
    url = TargetOption("--queue-url", "where", secret=True)
    assert url.env == "MSGBENCH_QUEUE_URL" and COUNT.env is None


@pytest.mark.parametrize(("args", "says"), [
    (("-t", "redis-list", "--pattern", "tasks", "--list-count", "0"), "--list-count"),
    (("-t", "ws", "--servers", "33"), "--servers"),
    (("-t", "redis-streams", "--stream-maxlen", "0"), "--stream-maxlen"),
    (("-t", "rabbitmq", "--amqp-prefetch", "-1"), "--amqp-prefetch"),
])
def test_the_cli_refuses_a_value_out_of_its_declared_bounds(run_cli: Any, args: tuple[str, ...],
                                                            says: str) -> None:
    r: CliRun = run_cli("run", *args, "-d", "1s")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], r.stderr


def _fake(name: str, *options: TargetOption) -> type[Target]:
    return type(name, (Target,), {"name": name, "options": options})


@pytest.mark.parametrize(("other", "clash"), [
    (TargetOption("--count", "other help", default=2, kind="int", min=1, max=9), False),
    (TargetOption("--count", "how many", default=4, kind="int", min=0, max=9), True),
    (TargetOption("--count", "how many", default=4, kind="int", min=1, max=9, secret=True),
     True),
    (TargetOption("--count", "how many", default="4"), True),
])
def test_two_targets_share_a_flag_only_as_one_kind_of_value(
        monkeypatch: pytest.MonkeyPatch, other: TargetOption, clash: bool) -> None:
    # the driver's own logic over two fake targets: no real target is this inconsistent
    fakes = {"one": _fake("one", COUNT), "two": _fake("two", other)}
    monkeypatch.setattr(registry, "target_names", lambda: sorted(fakes))
    monkeypatch.setattr(registry, "load_target_class", lambda name: fakes[name])
    if clash:
        with pytest.raises(TargetError, match="both declare --count"):
            registry.all_options()
    else:
        assert registry.all_options()["--count"] is COUNT


def test_a_run_loads_only_the_target_it_runs() -> None:
    """Each target's options are parsed only for its own runs: importing every installed
    target cost each run about 0.15 s of start-up."""
    probe = ("import sys; from msgbench.cli.run_cmd import make_run_command; "
             "make_run_command().make_context('run', sys.argv[1:]); "
             "print(' '.join(sorted({m.split('.')[2] for m in sys.modules "
             "if m.startswith('msgbench.targets.')})))")
    for args, loaded in ((["-d", "1s"], "inproc"), (["-t", "redis-list", "--list-count", "2"],
                                                    "redis")):
        out = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True,
                             text=True, check=True, timeout=60).stdout.split()
        assert out == [loaded], out


@pytest.mark.parametrize("args", [("-t", "redis", "--amqp-url", "amqp://127.0.0.1:1/"),
                                  ("--target=inproc", "--list-count", "3")])
def test_another_targets_option_is_refused_naming_the_target(run_cli: Any,
                                                             args: tuple[str, ...]) -> None:
    r: CliRun = run_cli("run", *args, "-d", "1s")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not apply to target" in lines[0], r.stderr

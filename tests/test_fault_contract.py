"""Every registered target x every fault its :class:`~msgbench.api.faults.FaultPlan` declares.

A target declares how to break itself (``Target.faults``); this suite does it, the same way
for every design, against real servers:

* no server behind its URL: exit 2 within seconds, one line naming what is unreachable;
* its server program not installed (nothing on PATH) and no URL: one line, exit 2, saying to
  install it or pass the URL;
* a wrong password: one line, and no password (wrong or right) printed;
* a server process killed (``kill -9``) or stopped (``SIGSTOP``) mid-run: the run ends within
  seconds as ``failed``, that server's role named, counts exact over the time measured;
* (``rpc``) a responder killed mid-run: every request not answered in time is a timeout,
  exactly, the other responder answers the rest, and the run ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest
from test_faults import (
    DURATION,
    FAULT_AT_S,
    KILL_DEADLINE_S,
    STOP_DEADLINE_S,
    _cmd,
    _descendants,
    _start,
    _wait_measuring,
)

from conftest import CliRun
from msgbench.api import Pattern, Target
from msgbench.api.faults import FaultPlan, HasUrl, Login, ServerFault
from msgbench.api.registry import load_target_class, target_names
from msgbench.kit.amqp_server import private_broker
from msgbench.kit.procs import free_port, which

SHORT = ["--duration", "500ms", "--warmup", "100ms", "--quiet"]
UNREACHABLE_S = 10.0
"""A run whose server is not there ends within this: the target's few-second connect timeout
plus an interpreter's start on a loaded machine."""
WRONG_PASSWORD = "not-the-password-3141"
SUBS = 4
"""Subscribers of a server-fault run (see ``test_faults._start``): broadcast owes each one."""
RESPONDER_RUN = ["--pubs", "2", "--subs", "2", "--procs", "3", "--rate", "500", "-d", "2s",
                 "-w", "300ms", "--kill-worker", "700ms", "--timeout", "300ms",
                 "--drain-timeout", "1s", "--json", "--quiet"]
RESPONDER_ENDS_S = 30.0
"""A run with a killed responder ends within this (a few seconds of load and timeouts)."""
GONE_WITHIN_S = 3.0


def _serves_rpc(cls: type[Target]) -> bool:
    """The one place this suite asks which patterns a target carries."""
    return Pattern.RPC in cls.patterns


def _marks(cls: type[Target]) -> list[Any]:
    missing = [p for p in cls.faults.needs if which(p) is None]
    if missing:
        return [pytest.mark.skip(reason=f"needs {', '.join(missing)}")]
    ready = cls().check()
    return [] if ready.ok else [pytest.mark.skip(reason=ready.detail)]


def _cases(kind: str) -> list[Any]:
    """pytest params ``(name, plan, detail)`` for every target declaring ``kind``."""
    out = []
    for name in target_names():
        cls = load_target_class(name)
        plan, marks = cls.faults, _marks(cls)
        if kind == "unreachable" and plan.unreachable:
            out.append(pytest.param(name, plan, None, marks=marks, id=f"{name}-no-server"))
        elif kind == "uninstalled" and plan.unreachable and plan.unreachable.option \
                and plan.needs:
            out.append(pytest.param(name, plan, None, marks=marks, id=f"{name}-not-installed"))
        elif kind == "login" and plan.login:
            out.append(pytest.param(name, plan, None, marks=marks, id=f"{name}-bad-password"))
        elif kind == "server":
            out += [pytest.param(name, plan, s, marks=marks, id=f"{name}-{s.id}")
                    for s in plan.servers]
        elif kind == "responder" and _serves_rpc(cls):
            out += [pytest.param(name, plan, v, marks=marks,
                                 id=f"{name}-responder" + "".join(f"-{a}" for a in v[1::2]))
                    for v in plan.responder_runs]
    return out


def _one_error_line(r: CliRun) -> str:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert not r.result_files()
    return lines[0]


@pytest.fixture(scope="session")
def login_servers() -> dict[int, HasUrl]:
    """One protected server per :class:`Login` for the session, by ``id(login)``."""
    return {}


def _login_server(login: Login, cache: dict[int, HasUrl], request: pytest.FixtureRequest,
                  stack: contextlib.ExitStack) -> HasUrl:
    """A running server that requires ``login``'s password, started once per session."""
    if id(login) not in cache:
        if login.server is private_broker:
            # conftest's session node is this very helper's: one RabbitMQ start, not two
            cache[id(login)] = request.getfixturevalue("rabbit_broker")
        else:
            cache[id(login)] = stack.enter_context(login.server())
    return cache[id(login)]


@pytest.fixture(scope="session")
def session_stack() -> Iterator[contextlib.ExitStack]:
    """Where session-long servers are stopped, after the last test."""
    with contextlib.ExitStack() as stack:
        yield stack


@pytest.mark.parametrize(("name", "plan", "_"), _cases("unreachable"))
def test_no_server_is_one_line_naming_what_is_unreachable(
        run_cli: Any, name: str, plan: FaultPlan, _: None) -> None:
    assert plan.unreachable is not None
    port = free_port()  # free: nothing listens there
    started = time.monotonic()
    r = run_cli("run", "-t", name, *plan.unreachable.argv(port), *SHORT)
    elapsed = time.monotonic() - started
    line = _one_error_line(r)
    assert plan.unreachable.says in line and f"127.0.0.1:{port}" in line, line
    assert elapsed < UNREACHABLE_S, f"took {elapsed:.1f} s to give up"


@pytest.mark.parametrize(("name", "plan", "_"), _cases("uninstalled"))
def test_no_server_installed_and_no_url_says_what_to_do(
        run_cli: Any, name: str, plan: FaultPlan, _: None, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert plan.unreachable is not None and plan.unreachable.option is not None
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: none of plan.needs
    line = _one_error_line(run_cli("run", "-t", name, *plan.unreachable.without_server(),
                                   *SHORT))
    assert "install" in line and plan.unreachable.option in line, line


@pytest.mark.parametrize(("name", "plan", "_"), _cases("login"))
def test_a_wrong_password_is_one_line_that_prints_no_password(
        run_cli: Any, name: str, plan: FaultPlan, _: None, request: pytest.FixtureRequest,
        login_servers: dict[int, HasUrl], session_stack: contextlib.ExitStack) -> None:
    login = plan.login
    assert login is not None
    url = _login_server(login, login_servers, request, session_stack).url
    right = urlsplit(url).password
    assert right, f"{name}: the login server's URL carries no password"
    wrong = url.replace(f":{right}@", f":{WRONG_PASSWORD}@", 1)
    r = run_cli("run", "-t", name, *login.args, login.option, wrong, *SHORT)
    line = _one_error_line(r)
    assert login.refused in line, line
    assert WRONG_PASSWORD not in r.stderr and right not in r.stderr


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP], ids=["kill-9", "sigstop"])
@pytest.mark.parametrize(("name", "plan", "fault"), _cases("server"))
def test_a_killed_or_stopped_server_fails_the_run_named_with_exact_counts(
        tmp_path: Path, name: str, plan: FaultPlan, fault: ServerFault,
        sig: signal.Signals) -> None:
    proc = _start(tmp_path, ["-t", name, "--pattern", fault.pattern, *fault.args])
    _wait_measuring(proc)
    time.sleep(FAULT_AT_S)
    everyone = _descendants(proc.pid)
    victims = [p for p in everyone if fault.matches(_cmdline(p))]
    assert victims, f"no {fault.command} among {[_cmd(p) for p in everyone]}"
    hit_at = time.monotonic()
    os.kill(victims[0].pid, sig)
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        if sig is signal.SIGSTOP:
            for p in everyone:  # nothing may stay stopped behind the test
                with contextlib.suppress(psutil.Error):
                    p.send_signal(signal.SIGCONT)
    elapsed = time.monotonic() - hit_at
    deadline = KILL_DEADLINE_S if sig is signal.SIGKILL else STOP_DEADLINE_S
    assert elapsed < deadline, f"{fault.id} {sig.name}: the run took {elapsed:.1f} s to end"
    assert proc.returncode == 1, err
    doc = json.loads(out)
    assert doc["status"] == "failed" and doc["partial"] is True
    assert any(fault.role in r for r in doc["reasons"][:2]), doc["reasons"]
    s = doc["summary"]
    owed = SUBS if fault.pattern == "broadcast" else 1
    assert s["published"] > 0 and s["expected"] == s["published"] * owed, s
    assert s["lost"] == max(0, s["expected"] - s["delivered"])
    assert 0 < s["duration_s"] < float(DURATION.rstrip("s")), "rates over the time measured"
    assert s["deliveries_per_s"] == pytest.approx(
        s["delivered_in_window"] / s["duration_s"], rel=1e-6)
    if sig is signal.SIGKILL:
        dead = [p for p in doc["processes"] if p["pid"] == victims[0].pid]
        assert dead and dead[0]["cpu_s"] > 0, "a dead process keeps the CPU it used"
    _none_left(everyone)


@pytest.mark.parametrize(("name", "plan", "variant"), _cases("responder"))
def test_a_killed_responder_shows_as_exact_timeouts_and_the_run_ends(
        run_cli: Any, name: str, plan: FaultPlan, variant: tuple[str, ...],
        request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
        login_servers: dict[int, HasUrl], session_stack: contextlib.ExitStack) -> None:
    shared: list[str] = []
    if plan.login is not None and plan.login.reuse:
        url = _login_server(plan.login, login_servers, request, session_stack).url
        if plan.login.env:  # the password stays off the command line
            monkeypatch.setenv(plan.login.env, url)
        else:
            shared = [plan.login.option, url]
    started = time.monotonic()
    r = run_cli("run", "-t", name, "--pattern", "rpc", *variant, *shared, *RESPONDER_RUN)
    elapsed = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    s = doc["summary"]
    assert any("killed on purpose" in x for x in doc["reasons"]), doc["reasons"]
    # every request not answered in time is a timeout, exactly; whether one was in flight at
    # the killed responder is a race, so no count of them is asked for
    assert s["timeouts"] == s["expected"] - (s["delivered"] - s["late"]) >= 0, s
    assert s["lost"] == s["expected"] - s["delivered"]
    assert s["misrouted"] == 0
    # the design stopped sending to the dead responder: the other one answered the rest
    assert s["delivered"] > s["expected"] // 2, s
    assert elapsed < RESPONDER_ENDS_S, f"the run took {elapsed:.0f} s"


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def _none_left(everyone: list[psutil.Process]) -> None:
    """Every process of the run is gone within :data:`GONE_WITHIN_S`."""
    deadline = time.monotonic() + GONE_WITHIN_S
    while True:
        left = [p for p in everyone if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not left:
            return
        assert time.monotonic() < deadline, f"left behind: {[_cmd(p) for p in left]}"
        time.sleep(0.1)

"""Passwords never leak: not on a command line, not in a message, a log, a result or a
sweep line, whatever characters they hold."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
import pytest
import redis
from hypothesis import assume, given
from hypothesis import strategies as st

from conftest import msgbench_argv
from msgbench.api.registry import all_options, secret_options
from msgbench.kit.amqp_server import PrivateBroker
from msgbench.kit.redis_cluster import parse_url
from msgbench.kit.redis_server import RedisServer, check_installed, private_server
from msgbench.kit.urls import mask_url
from msgbench.orchestration.sweep import secrets_to_env
from msgbench.results.assemble import without_secrets

PASSWORD = "s3cr@t:p w!x"
"""Holds what broke the old masking: an ``@`` (masked only up to it), a ``:``, a space."""
HOST = "127.0.0.1:6379/0"
users = st.text(st.characters(categories=("L", "N")), max_size=8)
passwords = st.text(min_size=1, max_size=40)


@given(users, passwords)
def test_percent_encoded_passwords_are_masked(user: str, password: str) -> None:
    url = f"redis://{user}:{quote(password, safe='')}@{HOST}"
    assert mask_url(url) == f"redis://{user}:***@{HOST}"
    message = f"cannot reach Redis at {url}: connection refused"
    masked = f"cannot reach Redis at redis://{user}:***@{HOST}: connection refused"
    assert mask_url(message) == masked


@given(passwords)
def test_raw_passwords_are_masked_whatever_they_hold(password: str) -> None:
    # a URL inside the password (after a space, quote, ...) is taken for a URL of its own:
    # that one case is out of reach of any masking of free text
    assume("://" not in password)
    url = f"redis://:{password}@{HOST}"
    assert mask_url(url) == f"redis://:***@{HOST}"
    assert mask_url(f"rediss://u:{password}@h:1") == "rediss://u:***@h:1"
    shown = mask_url(f"invalid Redis URL {url!r}: bad port")
    assert shown.startswith("invalid Redis URL 'redis://:***@") or shown.startswith(
        'invalid Redis URL "redis://:***@')
    assume(len(password) >= 4 and password not in f"invalid Redis URL 'redis://:***@{HOST}'")
    try:
        parse_url(url + "x:bad")  # whatever it says, the password is not in it
    except ValueError as exc:
        assert password not in str(exc)


def test_urls_without_passwords_are_left_alone() -> None:
    for text in ("redis://127.0.0.1:6379/0", "redis://alice@h:1", "no url here",
                 "tcp://127.0.0.1:5555,tcp://127.0.0.1:5556"):
        assert mask_url(text) == text
    assert mask_url("a redis://:x@h and rediss://u:y@k") == "a redis://:***@h and rediss://u:***@k"
    cfg = {"target": "ws", "target_options": {"redis_url": f"redis://:{PASSWORD}@{HOST}"}}
    assert PASSWORD not in json.dumps(without_secrets(cfg))


def test_sweep_hands_passwords_to_runs_by_environment() -> None:
    url = f"redis://:{PASSWORD}@{HOST}"
    args, env = secrets_to_env(["--target", "redis", "--redis-url", url, "--subs", "2"])
    assert args == ["--target", "redis", "--subs", "2"]
    assert env == {"MSGBENCH_REDIS_URL": url}
    args, env = secrets_to_env([f"--redis-url={url}"])
    assert args == [] and env == {"MSGBENCH_REDIS_URL": url}
    amqp = f"amqp://u:{PASSWORD}@127.0.0.1:5672/"
    args, env = secrets_to_env(["-t", "rabbitmq", f"--amqp-url={amqp}", "--durable"])
    assert args == ["-t", "rabbitmq", "--durable"] and env == {"MSGBENCH_AMQP_URL": amqp}


def test_every_option_that_takes_a_url_is_declared_secret() -> None:
    # a URL may carry a password: an option taking one that is not declared secret would
    # go on a sweep child's command line (the --amqp-url leak this guards against)
    urls = {flag: opt for flag, opt in all_options().items() if flag.endswith("-url")}
    assert {"--redis-url", "--amqp-url"} <= set(urls)
    assert [f for f, opt in urls.items() if not opt.secret] == []
    assert secret_options()["--amqp-url"] == "MSGBENCH_AMQP_URL"


@pytest.fixture
def protected() -> Iterator[RedisServer]:
    """A private redis-server whose password is :data:`PASSWORD`."""
    if check_installed():
        pytest.skip("redis-server not installed")
    with private_server() as server:
        client = redis.Redis.from_url(server.url)
        client.config_set("requirepass", PASSWORD)
        client.close()
        yield server


def _url(server: RedisServer, password: str = PASSWORD) -> str:
    hostport = server.url.split("//", 1)[1].split("/", 1)[0]
    return f"redis://:{password}@{hostport}/0"


def _command_lines(pid: int) -> list[str]:
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    out = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            out.append(" ".join(p.cmdline()))
    return out


def test_ws_run_keeps_the_password_off_every_command_line(tmp_path: Path,
                                                         protected: RedisServer) -> None:
    argv = msgbench_argv("run", "-t", "ws", "--servers", "2", "--bridge", "redis",
                         "--rate", "500", "-d", "2s", "-w", "0s", "--out", str(tmp_path))
    env = {"MSGBENCH_REDIS_URL": _url(protected), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    seen: list[str] = []
    while proc.poll() is None:
        seen += _command_lines(proc.pid)
        time.sleep(0.1)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    servers = [c for c in seen if "serve_cmd" in c]
    assert servers, "no chat server seen"
    assert not [c for c in seen if "s3cr" in c]
    doc = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert doc["summary"]["lost"] == 0 and doc["summary"]["delivered"] > 0
    roles = [p["role"] for p in doc["processes"]]
    assert "redis-server" not in roles, "the bridge used a private Redis, not the given one"
    for text in (out, err, json.dumps(doc)):
        assert "s3cr" not in text


@pytest.mark.parametrize("args", [
    ["run", "-t", "redis", "--redis-url", f"redis://:{PASSWORD}@127.0.0.1:notaport/0"],
    ["run", "-t", "redis-streams", "--redis-url", f"redis://:{PASSWORD}@127.0.0.1:1/x"],
    ["run", "-t", "ws", "--bridge", "redis", "--redis-url", f"redis://:{PASSWORD}@127.0.0.1:1"],
    ["serve", "chat", "--port", "0", "--bridge", "redis", "--redis-url",
     f"redis://:{PASSWORD}@127.0.0.1:notaport"],
    ["serve", "chat", "--port", "0", "--bridge", "redis", "--redis-url",
     f"redis://:{PASSWORD}@127.0.0.1:1"],
])
def test_bad_urls_are_one_line_without_the_password(args: list[str], tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "msgbench", *args, *(
        ["-d", "1s", "-w", "0s", "--out", str(tmp_path)] if args[0] == "run" else [])],
        capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "s3cr" not in r.stderr and "***" in r.stderr


def test_wrong_password_message_is_masked(run_cli: Any, protected: RedisServer) -> None:
    r = run_cli("run", "-t", "redis", "--redis-url", _url(protected, "n@pe:n0pe"),
                "-d", "1s", "-w", "0s")
    assert r.returncode == 2 and "refused the password" in r.stderr
    assert "n0pe" not in r.stderr and "n@pe" not in r.stderr


def test_sweep_progress_line_is_masked() -> None:
    from msgbench.orchestration.sweep import Cell

    cell = Cell(f"redis --redis-url redis://:{PASSWORD}@{HOST}", 1, 2, 64, "1k", 1, "1s", "0s")
    assert "s3cr" not in cell.label() and "redis://:***@" in cell.label()


def test_sweep_keeps_an_amqp_password_off_every_child_command_line(
        tmp_path: Path, rabbit_broker: PrivateBroker) -> None:
    """The sweep is given ``--amqp-url`` with the password; no process it starts (the
    runs, their workers) shows it in its argv, and the run still reaches the broker."""
    out = tmp_path / "sweep"
    argv = msgbench_argv("sweep", "-t", "rabbitmq", "--subs", "1,2", "--rate", "500",
                         "-d", "1s", "-w", "0s", "--out", str(out),
                         "--amqp-url", rabbit_broker.url)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    while proc.poll() is None:
        seen += _command_lines(proc.pid)[1:]  # [0] is the sweep the user typed
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stderr
    runs = [c for c in seen if " run " in f" {c} "]
    assert runs, "no run seen"
    assert [c for c in seen if rabbit_broker.password in c] == []
    docs = [json.loads(p.read_text()) for p in out.rglob("*.json")
            if "schema_version" in p.read_text()]
    assert len(docs) == 2 and all(d["summary"]["delivered"] == d["summary"]["expected"] > 0
                                  for d in docs)
    assert all(d["target"]["managed"] is False for d in docs), "a private broker was used"
    for text in (stdout, stderr, *(json.dumps(d) for d in docs)):
        assert rabbit_broker.password not in text

"""Start and stop a private rabbitmq-server for a run.

A private broker is a node of its own: its own node name, a data and log directory in a
temp dir (removed afterwards), AMQP on a free loopback port, Erlang distribution on
another free loopback port, registered with a private ``epmd`` that listens on a free
loopback port too (so nothing listens beyond 127.0.0.1 and the machine's own epmd and
nodes are never touched). No plugins (the management plugin stays off). Erlang's
schedulers busy-wait by default, which would bill the broker for CPU it does not need:
the node runs with :data:`SCHEDULER_ARGS`. The login is a user made up for the run with
a random password, written only to the node's config file (mode 0600), never to a
command line.

The broker's ``beam.smp`` process is what a run measures; :func:`private_broker` stops it
(SIGTERM: RabbitMQ shuts down cleanly) and then its epmd, and leaves no process behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from msgbench.api.target import TargetError
from msgbench.kit.procs import (
    LOOPBACK,
    _die_with_parent,
    free_port,
    spawn_server,
    stop_process,
    which,
)

WRAPPER = "rabbitmq-script-wrapper"
"""What Debian's ``/usr/sbin/rabbitmq-server`` links to: it changes user and directory; the
real start script lies next to it."""
START_TIMEOUT_S = 60.0
"""A cold start on a busy 2-core machine takes 5-10 s; give it room before failing."""
STOP_TIMEOUT_S = 15.0
"""A clean RabbitMQ shutdown takes about a second; beyond this it is killed."""
READY_POLL_S = 0.05
SCHEDULER_ARGS = "+sbwt none +sbwtdcpu none +sbwtdio none"
"""No scheduler busy-waiting: the broker's CPU-s then count work, not spinning."""
INSTALL_HINT = (
    "rabbitmq-server is not installed: install it (Debian/Ubuntu: sudo apt-get install "
    "rabbitmq-server) or pass --amqp-url amqp://user:pass@host:port/vhost"
)
USER = "msgbench"


@dataclass(frozen=True)
class PrivateBroker:
    """A running private node: where it listens, its login, its process, what it took."""

    host: str
    port: int
    user: str
    password: str
    pid: int
    """The ``beam.smp`` process: the broker's CPU and memory."""
    node: str
    startup_s: float
    settings: dict[str, str]

    @property
    def url(self) -> str:
        """``amqp://user:pass@127.0.0.1:port/`` (holds the password: never print it)."""
        return f"amqp://{self.user}:{self.password}@{self.host}:{self.port}/%2F"


def server_script() -> str | None:
    """The rabbitmq-server start script found on PATH (past Debian's wrapper), else None."""
    found = which("rabbitmq-server")
    if found is None:
        return None
    real = Path(found).resolve()
    beside = real.parent / "rabbitmq-server"
    return str(beside) if real.name == WRAPPER and beside.is_file() else found


def check_installed() -> str | None:
    """None when rabbitmq-server (and epmd) can be started here, else the install hint."""
    return None if server_script() and which("epmd") else INSTALL_HINT


def _config(port: int, password: str) -> str:
    return "\n".join((
        f"listeners.tcp.default = {LOOPBACK}:{port}",
        f"default_user = {USER}",
        f"default_pass = {password}",
        # our user may log in over loopback only anyway: the node listens nowhere else
        "loopback_users = none",
        "log.console = false",
        "log.file.level = warning",
        "",
    ))


def _env(tmp: Path, node: str, amqp_port: int, dist_port: int, epmd_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
    env.update({
        "HOME": str(tmp),  # the Erlang cookie is written here, not in the user's home
        "ERL_EPMD_PORT": str(epmd_port),
        "ERL_EPMD_ADDRESS": LOOPBACK,
        "RABBITMQ_CONF_ENV_FILE": "/dev/null",  # ignore /etc/rabbitmq/rabbitmq-env.conf
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_NODE_IP_ADDRESS": LOOPBACK,
        "RABBITMQ_NODE_PORT": str(amqp_port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_CONFIG_FILE": str(tmp / "rabbitmq.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(tmp / "advanced.config"),
        "RABBITMQ_MNESIA_BASE": str(tmp / "mnesia"),
        "RABBITMQ_LOG_BASE": str(tmp / "log"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(tmp / "enabled_plugins"),
        # exec the VM in place: the process we start *is* beam.smp, and it dies with us
        "RABBITMQ_ALLOW_INPUT": "1",
        "RABBITMQ_SERVER_START_ARGS": "-noinput",
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
            f"{SCHEDULER_ARGS} -kernel inet_dist_use_interface {{127,0,0,1}}",
    })
    return env


def _beam_pid(proc: subprocess.Popen[bytes]) -> int:
    """The beam.smp process: ``proc`` itself once the scripts have exec'd, else its child."""
    with contextlib.suppress(psutil.Error):
        p = psutil.Process(proc.pid)
        if p.name().startswith("beam"):
            return proc.pid
        for c in p.children(recursive=True):
            if c.name().startswith("beam"):
                return int(c.pid)
    return proc.pid


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=0.2):
        return True
    return False


def _tail(log: Path) -> str:
    try:
        lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return "no output"
    errors = [x for x in lines if "error" in x.lower()]
    return (errors or lines or ["no output"])[-1].strip()[:300]


@contextlib.contextmanager
def private_broker() -> Iterator[PrivateBroker]:
    """Run a private RabbitMQ node for the duration of the block (see the module docstring).

    Returns once the AMQP port accepts connections. Raises :class:`TargetError` with
    one line when rabbitmq-server is missing or the node does not come up in time.
    """
    hint = check_installed()
    script = server_script()
    if hint or script is None:
        raise TargetError(INSTALL_HINT)
    password = secrets.token_urlsafe(18)
    with tempfile.TemporaryDirectory(prefix="msgbench-rabbitmq-") as name:
        tmp = Path(name)
        (tmp / "mnesia").mkdir()
        (tmp / "log").mkdir()
        (tmp / "enabled_plugins").write_text("[].\n")
        (tmp / "advanced.config").write_text("[].\n")
        amqp_port, dist_port, epmd_port = free_port(), free_port(), free_port()
        conf = tmp / "rabbitmq.conf"
        conf.touch(mode=0o600)
        conf.write_text(_config(amqp_port, password))
        node = f"msgbench-{secrets.token_hex(4)}@localhost"
        started = time.monotonic()
        epmd = spawn_server(["epmd", "-port", str(epmd_port), "-address", LOOPBACK],
                            log_path=tmp / "epmd.log")
        broker: subprocess.Popen[bytes] | None = None
        try:
            broker = _spawn(script, _env(tmp, node, amqp_port, dist_port, epmd_port),
                            tmp / "server.log")
            _wait_ready(broker, amqp_port, tmp)
            yield PrivateBroker(
                LOOPBACK, amqp_port, USER, password, _beam_pid(broker), node,
                round(time.monotonic() - started, 3),
                {"scheduler_busy_wait": SCHEDULER_ARGS, "plugins": "none",
                 "bind": LOOPBACK, "node": node},
            )
        finally:
            if broker is not None:
                stop_process(broker, STOP_TIMEOUT_S)
            stop_process(epmd)


def _spawn(script: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Like :func:`~msgbench.kit.procs.spawn_server` (own session, dies with msgbench),
    with the node's environment instead of ours."""
    with open(log, "wb") as out:
        return subprocess.Popen([script], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, cwd=env["HOME"], env=env,
                                start_new_session=True, preexec_fn=_die_with_parent)


def _wait_ready(proc: subprocess.Popen[bytes], port: int, tmp: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _accepts(port):
        if proc.poll() is not None:
            logs = sorted((tmp / "log").glob("*.log")) or [tmp / "server.log"]
            raise TargetError(f"rabbitmq-server exited at start (code {proc.returncode}): "
                              f"{_tail(logs[0])}")
        if time.monotonic() >= deadline:
            raise TargetError(f"rabbitmq-server did not listen within {START_TIMEOUT_S:g} s")
        time.sleep(READY_POLL_S)

"""Servers msgbench did not start: a stall is named within seconds (the progress watchdog).

Each server here is started by the test and given to msgbench by URL only, so msgbench has
no pid to watch: a SIGSTOP of it, or a proxy in front of it that stops forwarding (the
connection stays up, nothing more comes through), must end the run as ``failed`` within
about the stall interval, naming the server by its masked URL, with exact counts over the
time measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_faults import _wait_measuring

from conftest import msgbench_argv
from msgbench.kit.amqp_server import PrivateBroker
from msgbench.kit.procs import LOOPBACK
from msgbench.kit.redis_server import RedisServer, check_installed, private_server

FAULT_AT_S = 1.5
DURATION = "8s"
ENDS_WITHIN_S = 3.0
"""The stall interval (1 s), a flow report (0.1 s), the run's exit and a loaded machine."""
SUBS = 4


class FreezingProxy:
    """A TCP proxy on loopback that forwards both ways until :meth:`freeze`; after that it
    holds every byte while the connections stay open (a path that silently stops)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.frozen = threading.Event()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def __enter__(self) -> FreezingProxy:
        self._thread.start()
        assert self._ready.wait(10), "the proxy did not start"
        return self

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _close(self) -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def freeze(self) -> None:
        """From now on nothing is forwarded either way."""
        self.frozen.set()

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, LOOPBACK, 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(LOOPBACK, self.upstream_port)
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer),
                             return_exceptions=True)
        for w in (writer, up_writer):
            w.close()

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while data := await src.read(65536):
            while self.frozen.is_set():
                await asyncio.sleep(0.05)  # held, never sent: the peer waits for ever
            dst.write(data)
            await dst.drain()


def _port(url: str) -> int:
    return int(url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    if check_installed():
        pytest.skip("redis-server not installed")
    with private_server() as server:
        yield server


def _start(tmp_path: Path, args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    argv = msgbench_argv("run", *args, "--pubs", "2", "--subs", str(SUBS), "--rate", "2k",
                         "-d", DURATION, "-w", "500ms", "--drain-timeout", "1s", "--json",
                         "--out", str(tmp_path))
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **env})


def _stalled(proc: subprocess.Popen[str], fault: Any, named: str) -> dict[str, Any]:
    """Run ``fault()`` 1.5 s into the measurement; the run must end soon after, failed,
    naming ``named`` and the silence, its counts exact."""
    _wait_measuring(proc)
    time.sleep(FAULT_AT_S)
    hit = time.monotonic()
    fault()
    out, err = proc.communicate(timeout=30)
    elapsed = time.monotonic() - hit
    assert elapsed < ENDS_WITHIN_S, f"the run took {elapsed:.1f} s to end after the fault"
    assert proc.returncode == 1, err
    doc: dict[str, Any] = json.loads(out)
    assert doc["status"] == "failed" and doc["partial"] is True
    first = doc["reasons"][0]
    assert named in first and "nothing arrived for" in first, doc["reasons"]
    s = doc["summary"]
    owed = SUBS if doc["config"]["pattern"] == "broadcast" else 1
    assert s["published"] > 0 and s["expected"] == s["published"] * owed, s
    assert s["lost"] == s["expected"] - s["delivered"] > 0
    assert 0 < s["duration_s"] < FAULT_AT_S + ENDS_WITHIN_S, "rates over the time measured"
    assert s["deliveries_per_s"] == pytest.approx(s["delivered_in_window"] / s["duration_s"],
                                                  rel=1e-6)
    return doc


@pytest.mark.parametrize("target", [("-t", "redis"), ("-t", "redis-streams"),
                                    ("-t", "redis-list", "--pattern", "tasks"),
                                    ("-t", "redis-rpc", "--pattern", "rpc")],
                         ids=lambda t: "-".join(t[1::2]))
def test_a_silent_path_to_a_users_redis_is_named(tmp_path: Path, redis_server: RedisServer,
                                                 target: tuple[str, ...]) -> None:
    with FreezingProxy(_port(redis_server.url)) as proxy:
        url = f"redis://{LOOPBACK}:{proxy.port}/0"
        proc = _start(tmp_path, [*target], {"MSGBENCH_REDIS_URL": url})
        _stalled(proc, proxy.freeze, f"{LOOPBACK}:{proxy.port}")


def test_a_stopped_users_redis_is_named(tmp_path: Path, redis_server: RedisServer) -> None:
    assert redis_server.pid is not None
    proc = _start(tmp_path, ["-t", "redis"], {"MSGBENCH_REDIS_URL": redis_server.url})
    try:
        _stalled(proc, lambda: os.kill(redis_server.pid or 0, signal.SIGSTOP),
                 f"{LOOPBACK}:{_port(redis_server.url)}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(redis_server.pid, signal.SIGCONT)


def test_a_silent_path_to_a_users_rabbitmq_is_named(tmp_path: Path,
                                                    rabbit_broker: PrivateBroker) -> None:
    with FreezingProxy(rabbit_broker.port) as proxy:
        url = rabbit_broker.url.replace(f":{rabbit_broker.port}/", f":{proxy.port}/")
        proc = _start(tmp_path, ["-t", "rabbitmq"], {"MSGBENCH_AMQP_URL": url})
        doc = _stalled(proc, proxy.freeze, f"{LOOPBACK}:{proxy.port}")
        assert rabbit_broker.password not in json.dumps(doc)

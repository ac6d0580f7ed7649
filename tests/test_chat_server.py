"""The chat server as a program: page, rooms, bridges, bad input, slow clients, bad start."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from msgbench.kit.procs import LOOPBACK, free_port, spawn_server, stop_process, wait_for_port
from msgbench.kit.redis_server import check_installed, private_server
from msgbench.targets.ws.chat_hub import LOG_SUMMARY_S
from msgbench.targets.ws.target import SERVE_CHAT

START_TIMEOUT_S = 15.0
RECV_TIMEOUT_S = 5.0
QUIET_S = 0.3


@contextmanager
def chat_server(tmp_path: Path, *args: str, name: str = "chat") -> Iterator[int]:
    """A real ``msgbench serve chat`` on a free port; yields the port, stops it after."""
    port = free_port()
    log = tmp_path / f"{name}.log"
    proc = spawn_server([*SERVE_CHAT, "--port", str(port), *args], log_path=log)
    try:
        wait_for_port(LOOPBACK, port, START_TIMEOUT_S, proc)
        yield port
    finally:
        stop_process(proc)
    assert proc.returncode == 0, log.read_text()


def stats(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/stats", timeout=5) as r:
        data: dict[str, Any] = json.loads(r.read())
        return data


async def join(port: int, room: str, **query: str) -> ClientConnection:
    """A client that is a member of ``room`` once this returns."""
    q = "".join(f"&{k}={v}" for k, v in query.items())
    ws = await connect(f"ws://{LOOPBACK}:{port}/ws?room={room}&ack=1{q}")
    hello = json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S))
    assert hello["type"] == "joined" and hello["room"] == room
    return ws


async def nothing_arrives(ws: ClientConnection) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), QUIET_S)
    except TimeoutError:
        return True
    return False


def test_page_and_stats(tmp_path: Path) -> None:
    with chat_server(tmp_path) as port:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/", timeout=5) as r:
            assert r.headers["Content-Type"].startswith("text/html")
            page = r.read().decode()
        assert "<button" in page and "<input" in page
        # messages are rendered as text, never parsed as markup
        assert "innerHTML" not in page and "createTextNode" in page
        s = stats(port)
        assert s["connected"] == 0 and s["bridge"] == "none"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://{LOOPBACK}:{port}/nope", timeout=5)
        assert err.value.code == 404


def test_broadcast_stays_in_its_room(tmp_path: Path) -> None:
    async def scenario(port: int) -> None:
        a1, a2, b = await join(port, "a"), await join(port, "a"), await join(port, "b")
        sender = await connect(f"ws://{LOOPBACK}:{port}/ws?room=a&listen=0")
        await sender.send("hello <b>")
        await sender.send(b"\x00binary")
        for ws in (a1, a2):
            assert await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S) == "hello <b>"
            assert await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S) == b"\x00binary"
        await a1.send("echo")  # the sender of a room message gets it too
        assert await asyncio.wait_for(a1.recv(), RECV_TIMEOUT_S) == "echo"
        assert await asyncio.wait_for(a2.recv(), RECV_TIMEOUT_S) == "echo"
        assert await nothing_arrives(b)
        assert await nothing_arrives(sender)  # send-only: no echo
        for ws in (a1, a2, b, sender):
            await ws.close()

    with chat_server(tmp_path) as port:
        asyncio.run(scenario(port))
        s = stats(port)
        assert s["messages_in"] == 3
        assert s["messages_out"] == 2 * 2 + 2
        assert s["connections_total"] == 4


def _raw_handshake(port: int, room: str, rcvbuf: int | None = None) -> socket.socket:
    """A WebSocket client on a plain socket: it reads only what the test asks for."""
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((LOOPBACK, port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /ws?room={room} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, "server closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101")
    return sock


def _close_code(sock: socket.socket) -> int | None:
    """Read until EOF and return the code of the close frame the server sent, if any."""
    sock.settimeout(RECV_TIMEOUT_S)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    # The server's frames are unmasked; the close frame is the last one.
    i = data.rfind(b"\x88")
    return int.from_bytes(data[i + 2 : i + 4], "big") if i >= 0 and len(data) >= i + 4 else None


def test_bad_frames_close_only_their_sender(tmp_path: Path) -> None:
    with chat_server(tmp_path, "--max-size", "1k") as port:
        garbage = socket.create_connection((LOOPBACK, port))
        garbage.sendall(os.urandom(4096))  # not even HTTP
        garbage.close()

        bad = _raw_handshake(port, "a")
        bad.sendall(b"\x82\x05hello")  # an unmasked client frame: protocol error
        assert _close_code(bad) == 1002
        bad.close()

        mask = b"\x01\x02\x03\x04"
        big = _raw_handshake(port, "a")
        big.sendall(b"\x82\xfe" + (2000).to_bytes(2, "big") + mask + bytes(2000))
        assert _close_code(big) == 1009
        big.close()

        utf = _raw_handshake(port, "a")
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(b"\xff\xfe"))
        utf.sendall(b"\x81\x82" + mask + payload)  # text frame with invalid UTF-8
        assert _close_code(utf) == 1007
        utf.close()

        async def still_works() -> None:
            a = await join(port, "a")
            await a.send("still here")
            assert await asyncio.wait_for(a.recv(), RECV_TIMEOUT_S) == "still here"
            await a.close()

        asyncio.run(still_works())
        assert stats(port)["protocol_errors"] == 3


def test_slow_client_is_dropped_and_never_stalls_the_others(tmp_path: Path) -> None:
    size, count, step = 16 * 1024, 1500, 50  # 24 MiB: far more than socket buffers hold

    async def scenario(port: int) -> None:
        slow = _raw_handshake(port, "r", rcvbuf=4096)  # never reads again
        good = await join(port, "r", listen="1")
        sender = await connect(f"ws://{LOOPBACK}:{port}/ws?room=r&listen=0")
        received = 0

        async def read() -> None:
            nonlocal received
            async for msg in good:
                assert isinstance(msg, bytes) and msg[:4] == received.to_bytes(4, "big")
                received += 1
                if received == count:
                    return

        reader = asyncio.ensure_future(read())
        for i in range(0, count, step):
            for k in range(i, i + step):
                await sender.send(k.to_bytes(4, "big") + bytes(size - 4))
            # pace on the good client only: it must never be the slow one
            while received < i and not reader.done():
                await asyncio.sleep(0.005)
        await asyncio.wait_for(reader, 30)
        assert received == count
        assert stats(port)["slow_disconnects"] == 1
        # the server gives the slow client close_timeout to take its close frame, then aborts
        deadline = asyncio.get_running_loop().time() + RECV_TIMEOUT_S
        while stats(port)["connected"] != 2 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
        assert stats(port)["connected"] == 2  # good and sender stay
        slow.close()
        await good.close()
        await sender.close()

    with chat_server(tmp_path, "--max-client-buffer", "1M") as port:
        asyncio.run(scenario(port))


def _serve_chat(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "msgbench", "serve", "chat", *args],
                          capture_output=True, text=True, timeout=30, check=False)


def test_port_in_use_is_one_line_exit_2() -> None:
    with socket.socket() as busy:
        busy.bind((LOOPBACK, 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = _serve_chat("--port", str(port))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"msgbench: error: cannot listen on {LOOPBACK}:{port}: address already in use"
    ]


def test_unreachable_redis_is_one_line_exit_2() -> None:
    dead = free_port()
    r = _serve_chat("--port", str(free_port()), "--bridge", "redis", "--redis-url",
                    f"redis://{LOOPBACK}:{dead}")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot reach Redis at redis://{LOOPBACK}:{dead}/0" in lines[0]
    r = _serve_chat("--bridge", "zmq")
    assert r.returncode == 2 and "--zmq-bind" in r.stderr


async def _across(port_a: int, port_b: int) -> None:
    a, b = await join(port_a, "x"), await join(port_b, "x")
    await a.send("from a")
    await b.send(b"from b")
    got_a = [await asyncio.wait_for(a.recv(), RECV_TIMEOUT_S) for _ in range(2)]
    got_b = [await asyncio.wait_for(b.recv(), RECV_TIMEOUT_S) for _ in range(2)]
    assert sorted(map(repr, got_a)) == sorted(map(repr, got_b)) == ["'from a'", "b'from b'"]
    assert await nothing_arrives(a) and await nothing_arrives(b)  # no echo loops
    await a.close()
    await b.close()


@pytest.mark.skipif(check_installed() is not None, reason="redis-server is not installed")
def test_redis_bridge_shares_rooms(tmp_path: Path) -> None:
    with private_server() as redis, \
            chat_server(tmp_path, "--bridge", "redis", "--redis-url", redis.url,
                        name="a") as pa, \
            chat_server(tmp_path, "--bridge", "redis", "--redis-url", redis.url,
                        name="b") as pb:
        asyncio.run(_across(pa, pb))
        assert stats(pa)["bridge_in"] == stats(pb)["bridge_in"] == 2


def test_zmq_mesh_shares_rooms_without_echo(tmp_path: Path) -> None:
    za, zb = (f"tcp://{LOOPBACK}:{free_port()}" for _ in range(2))
    # Each server also lists itself as a peer: the origin tag must stop the echo.
    with chat_server(tmp_path, "--bridge", "zmq", "--zmq-bind", za, "--zmq-peer", zb,
                     "--zmq-peer", za, "--server-id", "a", name="a") as pa, \
            chat_server(tmp_path, "--bridge", "zmq", "--zmq-bind", zb, "--zmq-peer", za,
                        "--server-id", "b", name="b") as pb:
        asyncio.run(_wait_mesh(pa, pb))
        asyncio.run(_across(pa, pb))


async def _wait_mesh(pa: int, pb: int) -> None:
    """ZeroMQ connects in the background (slow joiner): wait until probes cross both ways."""
    a, b = await join(pa, "probe"), await join(pb, "probe")
    for src, dst, word in ((a, b, "ping a"), (b, a, "ping b")):
        for _ in range(100):
            await src.send(word)
            try:
                if await _next(dst, word):
                    break
            except TimeoutError:
                continue
        else:
            raise AssertionError("the ZeroMQ mesh never connected")
    await a.close()
    await b.close()


async def _next(ws: ClientConnection, word: str) -> bool:
    """True once ``word`` from the other server arrives (anything else is skipped)."""
    while True:
        if await asyncio.wait_for(ws.recv(), 0.05) == word:
            return True


@contextmanager
def chat_process(tmp_path: Path, *args: str, env: dict[str, str] | None = None
                 ) -> Iterator[tuple[int, subprocess.Popen[bytes], Path]]:
    """Like :func:`chat_server`, but yields (port, process, log) and accepts any exit."""
    port = free_port()
    log = tmp_path / "chat.log"
    proc = spawn_server([*SERVE_CHAT, "--port", str(port), *args], log_path=log, env=env)
    try:
        wait_for_port(LOOPBACK, port, START_TIMEOUT_S, proc)
        yield port, proc, log
    finally:
        stop_process(proc)


PING_FLOOD_BYTES = 48 * 1024 * 1024
MEMORY_SLACK = 24 * 1024 * 1024
"""A ping flood of PING_FLOOD_BYTES must cost the server far less than that."""


def test_ping_flood_counts_against_the_client_buffer(tmp_path: Path) -> None:
    mask = b"\x01\x02\x03\x04"
    ping = b"\x89\xfd" + mask + bytes(125)  # masked ping, 125 bytes: the pong is as big
    burst = ping * 512
    with chat_process(tmp_path, "--max-client-buffer", "1M") as (port, proc, _):
        server = psutil.Process(proc.pid)
        before = server.memory_info().rss
        flood = _raw_handshake(port, "p", rcvbuf=4096)  # never reads a pong
        sent = 0
        with contextlib.suppress(OSError):  # reset once the server drops it
            while sent < PING_FLOOD_BYTES:
                flood.sendall(burst)
                sent += len(burst)
        peak = server.memory_info().rss
        flood.close()
        assert sent < PING_FLOOD_BYTES, "the server kept answering a client that never reads"
        assert peak - before < MEMORY_SLACK, f"server grew by {(peak - before) >> 20} MiB"
        assert stats(port)["slow_disconnects"] == 1
        assert server.memory_info().rss - before < MEMORY_SLACK


def _handshake_status(port: int, **headers: str) -> int:
    """Status code of a WebSocket handshake with these extra headers (Host may be one)."""
    key = base64.b64encode(os.urandom(16)).decode()
    fields = {"Host": f"{LOOPBACK}:{port}", "Upgrade": "websocket", "Connection": "Upgrade",
              "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13", **headers}
    with socket.create_connection((LOOPBACK, port), timeout=RECV_TIMEOUT_S) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
        sock.sendall(f"GET /ws?room=o HTTP/1.1\r\n{head}\r\n".encode())
        return int(sock.recv(64).split(b" ")[1])


def test_only_its_own_page_and_allowed_origins_may_connect(tmp_path: Path) -> None:
    other = "https://chat.example.com"
    with chat_process(tmp_path, "--allow-origin", other) as (port, _, _):
        own = f"http://{LOOPBACK}:{port}"
        assert _handshake_status(port) == 101  # no Origin: not a browser (msgbench's clients)
        assert _handshake_status(port, Origin=own) == 101
        assert _handshake_status(port, Origin=f"http://localhost:{port}",
                                 Host=f"localhost:{port}") == 101
        assert _handshake_status(port, Origin=other) == 101
        assert _handshake_status(port, Origin="http://evil.example") == 403
        assert _handshake_status(port, Origin="null") == 403
        # DNS rebinding: a foreign name resolved to 127.0.0.1 is "same origin" only in name
        assert _handshake_status(port, Origin=f"http://evil.example:{port}",
                                 Host=f"evil.example:{port}") == 403
        assert stats(port)["origins_refused"] == 3


STALL_DEADLINE_S = 3.0 + 1.0 + 0.5 + 3.0
"""Stall timeout, check period, close grace, and slack for a busy machine."""


@pytest.mark.skipif(check_installed() is not None, reason="redis-server not installed")
@pytest.mark.parametrize("sig", [signal.SIGSTOP, signal.SIGKILL])
def test_lost_or_stalled_bridge_closes_clients_once_and_exits_1(
        tmp_path: Path, sig: signal.Signals) -> None:
    async def scenario(port: int) -> float:
        ws = await join(port, "s")
        os.kill(redis_pid, sig)
        t0 = time.monotonic()
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), STALL_DEADLINE_S)
        assert ws.close_code == 1011, ws.close_code
        return time.monotonic() - t0

    with private_server() as redis:
        assert redis.pid is not None
        redis_pid = redis.pid
        env = {"MSGBENCH_REDIS_URL": redis.url}
        try:
            with chat_process(tmp_path, "--bridge", "redis", env=env) as (port, proc, log):
                took = asyncio.run(scenario(port))
                assert proc.wait(STALL_DEADLINE_S) == 1
        finally:
            if sig == signal.SIGSTOP:
                os.kill(redis_pid, signal.SIGCONT)
    assert took < STALL_DEADLINE_S
    lines = log.read_text().splitlines()
    lost = [ln for ln in lines if "lost the redis bridge" in ln]
    assert len(lost) == 2, lines  # the server's log line and the exit message
    if sig == signal.SIGSTOP:
        assert "did not answer" in lost[0]


def test_many_slow_clients_are_one_log_line_and_a_count(tmp_path: Path) -> None:
    slow_clients, size = 12, 64 * 1024

    async def scenario(port: int) -> None:
        slow = [_raw_handshake(port, "r", rcvbuf=4096) for _ in range(slow_clients)]
        sender = await connect(f"ws://{LOOPBACK}:{port}/ws?room=r&listen=0")
        deadline = time.monotonic() + STALL_DEADLINE_S
        while stats(port)["slow_disconnects"] < slow_clients:
            assert time.monotonic() < deadline, stats(port)
            for _ in range(16):
                await sender.send(bytes(size))
            await asyncio.sleep(0.01)
        await sender.close()
        for s in slow:
            s.close()

    with chat_process(tmp_path, "--max-client-buffer", "256k") as (port, _, log):
        asyncio.run(scenario(port))
        time.sleep(LOG_SUMMARY_S + 1)  # the count comes once the window closes
        lines = log.read_text().splitlines()
    dropped = [ln for ln in lines if "disconnect slow client" in ln]
    counted = [ln for ln in lines if "more slow clients disconnected" in ln]
    assert len(dropped) == 1, dropped
    more = sum(int(ln.split("... and ")[1].split()[0]) for ln in counted)
    assert counted and more == slow_clients - 1, lines

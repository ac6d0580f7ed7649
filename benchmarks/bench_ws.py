"""Speed check of the WebSocket chat server and the ``ws`` target.

Part 1, 1 -> 1, 64 B, closed loop, interleaved trials of

* a reference without msgbench: the idiomatic websockets broadcast server
  (``async for msg in ws: broadcast(subscribers, msg)``, uvloop, compression
  off) in its own process, fed by a raw-socket client that writes pre-masked
  64-byte frames as fast as the socket takes them and read by a raw-socket
  client that only counts bytes: the relay rate of a bare websockets loop;
* ``msgbench run --target ws --pubs 1 --subs 1 --size 64 --rate max``, every
  latency recorded, clients included;

with the medians, their ratio and the CPU of server and clients side by side.

Part 2 (``--fanout``), 2 servers, 4 -> 32, 64 B, for each bridge: the highest
sustained open-loop rate (doubling from 250/s per publisher, then one
bisection step; sustained = status ok, nobody disconnected, >= 90 % of the
offered deliveries inside the window, p99 <= 200 ms) with clients spread over
both servers,
the same with every delivery crossing the bridge (``--ws-placement cross``),
then a run at half the cross maximum, whose p99 is the cross-server p99. CPU
of each server, the broker and the clients is printed for each run. (A closed
loop is no use here: publishers outrun 32 subscribers and the servers drop the
subscribers that fall behind, as they should.)

The machine is shared and noisy: only figures measured in one go compare.

    python3 benchmarks/bench_ws.py [--trials 3] [--duration 3s] [--fanout] [--no-single]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import psutil
import uvloop

from msgbench.kit.procs import LOOPBACK, free_port, spawn_server, stop_process, wait_for_port
from msgbench.targets.ws.target import SERVE_CHAT

PAYLOAD = 64
FRAMES_PER_WRITE = 1024
START_TIMEOUT_S = 10.0
SETTLE_S = 0.5
RECV_CHUNK = 1 << 18
START_RATE = 250
"""First open-loop rate per publisher tried by the fan-out search (messages/s)."""
SUSTAIN_SHARE = 0.9
SUSTAIN_P99_NS = 200_000_000


# -- reference: a bare websockets broadcast loop -----------------------------------------
def _reference_server(port: int) -> None:  # pragma: no cover - runs in a child process
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    subscribers: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        if ws.request.path == "/sub":
            subscribers.add(ws)
            try:
                await ws.wait_closed()
            finally:
                subscribers.discard(ws)
        else:
            async for msg in ws:
                broadcast(subscribers, msg)

    async def main() -> None:
        async with serve(handler, LOOPBACK, port, compression=None, max_size=65536):
            await asyncio.Future()

    uvloop.run(main())


def _handshake(port: int, path: str) -> socket.socket:
    sock = socket.create_connection((LOOPBACK, port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"handshake failed: {head[:40]!r}")
    return sock


def _raw_relay(seconds: float, chat: bool) -> dict[str, float]:
    """Frames/s relayed 1 -> 1 between raw-socket clients, with the server's CPU.

    ``chat``: msgbench's chat server; else the bare websockets loop. The clients
    cost next to nothing, so this compares the servers alone.
    """
    port = free_port()
    proc: Any
    if chat:
        proc = spawn_server([*SERVE_CHAT, "--port", str(port), "--log-level", "warning"])
        paths = ("/ws?room=r", "/ws?room=r&listen=0")
    else:
        proc = mp.get_context("spawn").Process(target=_reference_server, args=(port,),
                                               daemon=True)
        proc.start()
        paths = ("/sub", "/pub")
    try:
        wait_for_port(LOOPBACK, port, START_TIMEOUT_S)
        sub = _handshake(port, paths[0])
        time.sleep(0.1)  # let the server register the subscriber
        pub = _handshake(port, paths[1])
        mask = os.urandom(4)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(bytes(PAYLOAD)))
        chunk = (bytes((0x82, 0x80 | PAYLOAD)) + mask + body) * FRAMES_PER_WRITE
        frame_size = 2 + PAYLOAD
        received = [0]
        stop = threading.Event()

        def send() -> None:
            with contextlib.suppress(OSError):  # the socket is shut down at the end
                while not stop.is_set():
                    pub.sendall(chunk)

        def recv() -> None:
            with contextlib.suppress(OSError):
                while not stop.is_set():
                    data = sub.recv(RECV_CHUNK)
                    if not data:
                        return
                    received[0] += len(data)

        threads = [threading.Thread(target=send, daemon=True),
                   threading.Thread(target=recv, daemon=True)]
        for t in threads:
            t.start()
        server = psutil.Process(proc.pid)
        me = psutil.Process()
        time.sleep(SETTLE_S)
        b0, s0, c0, t0 = received[0], server.cpu_times(), me.cpu_times(), time.perf_counter()
        time.sleep(seconds)
        b1, s1, c1, t1 = received[0], server.cpu_times(), me.cpu_times(), time.perf_counter()
        stop.set()
        for sock in (pub, sub):
            sock.shutdown(socket.SHUT_RDWR)
        for t in threads:
            t.join(5)
        pub.close()
        sub.close()
        elapsed = t1 - t0
        return {
            "rate": (b1 - b0) / frame_size / elapsed,
            "server_cpu": (s1.user + s1.system - s0.user - s0.system) / elapsed,
            "client_cpu": (c1.user + c1.system - c0.user - c0.system) / elapsed,
        }
    finally:
        if chat:
            stop_process(proc)
        else:
            proc.terminate()
            proc.join(5)


# -- msgbench runs -----------------------------------------------------------------------
def _msgbench(*args: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run(
            [sys.executable, "-m", "msgbench", "run", "--target", "ws", "--size", str(PAYLOAD),
             "--json", "--quiet", "--out", out, *args],
            capture_output=True, text=True, check=False,
        )
    if not proc.stdout.strip():
        raise SystemExit(f"msgbench failed: {proc.stderr.strip()}")
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def _cpu(doc: dict[str, Any]) -> dict[str, float]:
    """Cores used in the measured window by each process (coordinator left out)."""
    secs = doc["summary"]["duration_s"]
    return {p["role"]: p["cpu_s"] / secs for p in doc["processes"]
            if p["role"] != "coordinator"}


def _first_limit(doc: dict[str, Any]) -> str:
    """The process that would saturate first: fewest deliveries per second of its own CPU.

    Each process is one event loop, so one core is its ceiling whatever else runs on
    the machine; on a shared machine this says more than the raw rate.
    """
    rate = doc["summary"]["deliveries_per_s"]
    cpu = {role: c for role, c in _cpu(doc).items() if c > 0}
    if not cpu or not rate:
        return "n/a"
    role = max(cpu, key=lambda r: cpu[r])
    return f"{role} ({rate / cpu[role] / 1e3:.0f} k/s with a full core)"


def _describe(doc: dict[str, Any]) -> str:
    s = doc["summary"]
    cpu = "  ".join(f"{k} {v * 100:.0f}%" for k, v in _cpu(doc).items())
    lost = f" lost {s['lost']}" if s["lost"] else ""
    return (f"{s['deliveries_per_s'] / 1e3:7.1f} k/s  p99 {s['latency_ns']['p99'] / 1e6:8.2f} ms"
            f"  [{doc['status']}{lost}]  CPU: {cpu}  first limit: {_first_limit(doc)}")


def single(trials: int, duration: str, seconds: float) -> None:
    """Part 1: 1 -> 1 against the bare loop."""
    ref, raw, ours = [], [], []
    for i in range(trials):
        ref.append(_raw_relay(seconds, chat=False))
        raw.append(_raw_relay(seconds, chat=True))
        doc = _msgbench("--pubs", "1", "--subs", "1", "--rate", "max", "--duration", duration,
                        "--warmup", "1s")
        ours.append(doc)
        for name, r in (("reference loop, raw clients", ref[-1]),
                        ("chat server, raw clients", raw[-1])):
            print(f"trial {i + 1}: {name:28} {r['rate'] / 1e3:7.1f} k/s  CPU server "
                  f"{r['server_cpu'] * 100:.0f}%  raw clients {r['client_cpu'] * 100:.0f}%",
                  flush=True)
        print(f"trial {i + 1}: {'msgbench run --target ws':28} {_describe(doc)}", flush=True)
    r_med = statistics.median(x["rate"] for x in ref)
    c_med = statistics.median(x["rate"] for x in raw)
    o_med = statistics.median(d["summary"]["deliveries_per_s"] for d in ours)
    srv = statistics.median(_cpu(d).get("chat-server 0", 0.0) for d in ours)
    cli = statistics.median(sum(v for k, v in _cpu(d).items() if k.startswith("worker"))
                            for d in ours)
    print(f"median reference (bare websockets broadcast loop): {r_med / 1e3:.1f} k frames/s")
    print(f"median chat server, same raw clients:              {c_med / 1e3:.1f} k frames/s"
          f"  (ratio {c_med / r_med:.2f})")
    print(f"median msgbench ws 1 -> 1, all recorded:           {o_med / 1e3:.1f} k deliveries/s"
          f"  (chat server {srv * 100:.0f}% of a core, client workers {cli * 100:.0f}%)")
    print(f"ratio msgbench ws / reference:                     {o_med / r_med:.2f}")


def _sustained(doc: dict[str, Any], rate: int, pubs: int, subs: int) -> bool:
    """Everything arrived, nobody was dropped, the window delivered >= 90 % of the offer
    and p99 stayed under :data:`SUSTAIN_P99_NS` (a queue that keeps growing is not kept up)."""
    offered = rate * pubs * subs
    s = doc["summary"]
    return bool(doc["status"] == "ok" and s["deliveries_per_s"] >= SUSTAIN_SHARE * offered
                and s["latency_ns"]["p99"] <= SUSTAIN_P99_NS)


def _search(common: list[str], label: str) -> tuple[int, dict[str, Any] | None]:
    """Highest open-loop rate per publisher that is sustained: doubling, then one bisection."""
    good, good_doc, bad = 0, None, 0
    rate = START_RATE
    while True:
        doc = _msgbench(*common, "--rate", str(rate))
        ok = _sustained(doc, rate, 4, 32)
        print(f"{label} {rate:6}/s/pub: {_describe(doc)}", flush=True)
        if ok:
            good, good_doc = rate, doc
            rate *= 2
        else:
            bad = rate
            break
    if good:
        mid = (good + bad) // 2
        doc = _msgbench(*common, "--rate", str(mid))
        print(f"{label} {mid:6}/s/pub: {_describe(doc)}", flush=True)
        if _sustained(doc, mid, 4, 32):
            good, good_doc = mid, doc
    return good, good_doc


def fanout(trials: int, duration: str) -> None:
    """Part 2: 2 servers, 4 -> 32, each bridge: sustained maxima, cross-server p99 at half."""
    common = ["--servers", "2", "--pubs", "4", "--subs", "32", "--duration", duration,
              "--warmup", "500ms"]
    summary = []
    for bridge in ("redis", "zmq"):
        for i in range(trials):
            label = f"{bridge:5} #{i + 1}"
            _, spread_doc = _search([*common, "--bridge", bridge], f"{label} spread")
            cross, cross_doc = _search([*common, "--bridge", bridge, "--ws-placement", "cross"],
                                       f"{label} cross ")
            half_rate = max(1, cross // 2)
            half = _msgbench(*common, "--bridge", bridge, "--ws-placement", "cross",
                             "--rate", str(half_rate))
            print(f"{label} cross at 50% ({half_rate}/s/pub): {_describe(half)}", flush=True)
            summary.append((bridge, spread_doc, cross_doc, half))
    print("sustained maxima (4 -> 32, 2 servers) and cross-server p99 at half the cross maximum:")
    for bridge, spread_doc, cross_doc, half in summary:
        def fig(d: dict[str, Any] | None) -> str:
            return "none sustained" if d is None else (
                f"{d['summary']['deliveries_per_s'] / 1e3:.1f} k/s")
        print(f"  {bridge:5} spread {fig(spread_doc):>14}   cross {fig(cross_doc):>14}   "
              f"cross p99 at 50%: {half['summary']['latency_ns']['p99'] / 1e6:.2f} ms "
              f"[{half['status']}]")
        for name, d in (("spread", spread_doc), ("cross", cross_doc)):
            if d is not None:
                print(f"        at the {name} maximum the first to saturate: {_first_limit(d)}")


def main() -> None:
    """Run the parts asked for and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--duration", default="3s")
    ap.add_argument("--fanout", action="store_true", help="also run part 2 (2 servers, 4 -> 32)")
    ap.add_argument("--no-single", action="store_true", help="skip part 1")
    args = ap.parse_args()
    seconds = float(args.duration.rstrip("s"))
    if not args.no_single:
        single(args.trials, args.duration, seconds)
    if args.fanout:
        fanout(args.trials, args.duration)


if __name__ == "__main__":
    main()

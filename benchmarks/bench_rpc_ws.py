"""Speed check of request/reply on the chat server (``ws --pattern rpc``).

Part 1, 1 requester x 1 responder, 64 B, one call in flight, for each layout (one
server; two servers bridged by Redis or ZeroMQ, requester on server 0 and responder
on server 1, so every request and reply crosses the bridge), interleaved trials of

* a reference without msgbench: a bare ``websockets`` request/echo loop against the
  same chat server program (``msgbench serve chat``, started the same way): the
  requester (uvloop, this process) sends a REQUEST frame and awaits the reply; the
  responder (its own process, as msgbench's responders are) echoes each request as a
  REPLY frame with its return address. Round trip from just before the send to the
  reply's arrival;
* ``msgbench run --target ws --pattern rpc --pubs 1 --subs 1 --rate max --inflight 1
  --batch 1``: the round trip the driver records (``--batch 1``: one request per send,
  as the bare loop sends; before main's ae397a5 the closed loop stamped a whole batch
  when it made it, so a larger batch counted each request's wait for a free slot);

and the median over trials of each one's p50 and p99, with msgbench's over the bare
loop's.

Part 2, 8 requesters x 2 responders open loop, for each layout and, as the reference
in the same invocation, for ``inproc`` (the driver's own ceiling: no network, no
server): the highest rate per requester with p99 <= 10 ms, no timeouts and every reply
matched (status ok), by doubling from 50/s and then bisecting twice between the last
rate that held and the first that did not; one short run per step (the machine is
shared: only figures from one invocation compare).

    python3 benchmarks/bench_rpc_ws.py [--trials 3] [--duration 2s] [--layouts none,redis,zmq]
        [--no-search] [--no-single]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import uvloop
from websockets.asyncio.client import ClientConnection, connect

from msgbench.kit.procs import LOOPBACK, free_port, spawn_server, stop_process, wait_for_port
from msgbench.kit.redis_server import REDIS_URL_OPTION, private_server
from msgbench.targets.ws.chat_rpc import REPLY, REQUEST
from msgbench.targets.ws.target import SERVE_CHAT

PAYLOAD = b"\x01" * 64
START_TIMEOUT_S = 15.0
READY_TIMEOUT_S = 10.0
"""How long the bare loop waits for its first reply (bridged: the responder's announcement)."""
PROBE_S = 0.1
WARMUP_CALLS = 200
P99_BOUND_NS = 10_000_000
START_RATE = 50
BISECT_STEPS = 2
REFERENCE = "inproc"
"""Part 2's reference: the same search on the inproc target."""
LAYOUT_ARGS = {"none": [], "redis": ["--servers", "2", "--bridge", "redis", "--ws-placement",
                                     "cross"],
               "zmq": ["--servers", "2", "--bridge", "zmq", "--ws-placement", "cross"]}


# -- the bare loop -------------------------------------------------------------------------
@contextlib.contextmanager
def chat_servers(layout: str) -> Iterator[list[str]]:
    """The chat servers of ``layout`` (as the ws target starts them); yields their /ws URLs."""
    k = 1 if layout == "none" else 2
    with contextlib.ExitStack() as stack:
        env: dict[str, str] = {}
        extra: list[list[str]] = [[] for _ in range(k)]
        if layout == "redis":
            env[str(REDIS_URL_OPTION.env)] = stack.enter_context(private_server()).url
        ports = [free_port() for _ in range(k)]
        if layout == "zmq":
            binds = [f"tcp://{LOOPBACK}:{free_port()}" for _ in range(k)]
            extra = [["--zmq-bind", binds[i], "--zmq-peer", binds[1 - i]] for i in range(k)]
        for i, port in enumerate(ports):
            argv = [*SERVE_CHAT, "--host", LOOPBACK, "--port", str(port), "--bridge", layout,
                    "--server-id", f"s{i}", "--log-level", "warning", *extra[i]]
            proc = spawn_server(argv, env=env)
            stack.callback(stop_process, proc)
            wait_for_port(LOOPBACK, port, START_TIMEOUT_S, proc)
        yield [f"ws://{LOOPBACK}:{p}/ws?room=svc&ack=1" for p in ports]


def _echo_responder(url: str) -> None:  # pragma: no cover - runs in a child process
    async def main() -> None:
        async with connect(url + "&respond=1", compression=None) as ws:
            await ws.recv()  # joined
            reply = bytes((REPLY,))
            async for frame in ws:
                assert isinstance(frame, bytes)
                await ws.send(reply + frame[1:])  # the address and the request, echoed

    uvloop.run(main())


async def _first_reply(req: ClientConnection) -> None:
    """Ask until a reply comes: bridged, the responder is known once it is announced."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        await req.send(bytes((REQUEST,)) + PAYLOAD)
        try:
            await asyncio.wait_for(req.recv(), PROBE_S)
            return
        except TimeoutError:
            if time.monotonic() > deadline:
                raise SystemExit("bare loop: no reply from the responder") from None


async def _bare_calls(url: str, seconds: float) -> list[int]:
    async with connect(url + "&listen=0", compression=None) as req:
        await req.recv()  # joined
        await _first_reply(req)
        await asyncio.sleep(PROBE_S * 2)  # replies to earlier probes
        while True:  # drain them
            try:
                await asyncio.wait_for(req.recv(), PROBE_S)
            except TimeoutError:
                break
        frame = bytes((REQUEST,)) + PAYLOAD
        out: list[int] = []
        end = time.monotonic_ns() + int(seconds * 1e9)
        n = 0
        while True:
            t0 = time.monotonic_ns()
            if t0 >= end:
                return out
            await req.send(frame)
            await req.recv()
            n += 1
            if n > WARMUP_CALLS:
                out.append(time.monotonic_ns() - t0)


def bare_loop(layout: str, seconds: float) -> dict[str, float]:
    """p50 / p99 (ns) and calls/s of the bare request/echo loop through ``layout``."""
    with chat_servers(layout) as urls:
        resp = mp.get_context("spawn").Process(target=_echo_responder, args=(urls[-1],),
                                               daemon=True)
        resp.start()
        try:
            lat = uvloop.run(_bare_calls(urls[0], seconds))
        finally:
            resp.terminate()
            resp.join(5)
    a = np.array(lat, dtype=np.int64)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
            "calls_per_s": len(a) / (a.sum() / 1e9)}


# -- msgbench runs ---------------------------------------------------------------------------
def msgbench(layout: str, *args: str) -> dict[str, Any]:
    """One ``msgbench run --target ws --pattern rpc`` through ``layout`` (or, for
    :data:`REFERENCE`, on that target) (JSON result)."""
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run(
            [sys.executable, "-m", "msgbench", "run", "--pattern", "rpc",
             "--size", str(len(PAYLOAD)), "--json", "--quiet", "--out", out,
             *(["--target", REFERENCE] if layout == REFERENCE
               else ["--target", "ws", *LAYOUT_ARGS[layout]]), *args],
            capture_output=True, text=True, check=False)
    if not proc.stdout.strip():
        raise SystemExit(f"msgbench failed: {proc.stderr.strip()}")
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def one_in_flight(layout: str, duration: str) -> dict[str, float]:
    doc = msgbench(layout, "--pubs", "1", "--subs", "1", "--rate", "max", "--inflight", "1",
                   "--batch", "1", "-d", duration, "-w", "500ms")
    s = doc["summary"]
    if doc["status"] != "ok":
        raise SystemExit(f"msgbench 1 x 1 {layout}: {doc['status']} {doc['reasons']}")
    lat = s["latency_uncorrected_ns"]
    return {"p50": float(lat["p50"]), "p99": float(lat["p99"]),
            "calls_per_s": float(s["deliveries_per_s"])}


def holds(layout: str, rate: int, duration: str) -> tuple[bool, str]:
    """Does 8 x 2 at ``rate`` per requester keep p99 <= 10 ms with every reply matched?"""
    doc = msgbench(layout, "--pubs", "8", "--subs", "2", "--rate", str(rate), "-d", duration,
                   "-w", "500ms", "--timeout", "1s")
    s = doc["summary"]
    p99 = s["latency_ns"]["p99"]
    ok = (doc["status"] == "ok" and s["timeouts"] == 0 and s["delivered"] == s["expected"]
          and p99 <= P99_BOUND_NS)
    return ok, (f"{rate:>6}/s x 8: {doc['status']:<8} p99 {p99 / 1e6:7.2f} ms  timeouts "
                f"{s['timeouts']}  matched {s['delivered']}/{s['expected']}")


def search(layout: str, duration: str) -> int | None:
    """The highest rate per requester that :func:`holds` (None if even 250/s does not)."""
    good: int | None = None
    rate = START_RATE
    while True:
        ok, line = holds(layout, rate, duration)
        print(f"    {line}", flush=True)
        if not ok:
            break
        good, rate = rate, rate * 2
    if good is None:
        return None
    bad = rate
    for _ in range(BISECT_STEPS):
        mid = (good + bad) // 2
        ok, line = holds(layout, mid, duration)
        print(f"    {line}", flush=True)
        if ok:
            good = mid
        else:
            bad = mid
    return good


def _us(ns: float) -> str:
    return f"{ns / 1e3:8.0f} us"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--duration", default="2s", help="each msgbench run's measured window")
    ap.add_argument("--layouts", default="none,redis,zmq")
    ap.add_argument("--no-search", action="store_true", help="skip part 2")
    ap.add_argument("--no-single", action="store_true", help="skip part 1")
    args = ap.parse_args()
    layouts = [x for x in args.layouts.split(",") if x]
    bad = [x for x in layouts if x not in LAYOUT_ARGS]
    if bad or args.trials < 1:
        print(f"bench_rpc_ws: unknown layout {bad[0]!r}: use none, redis, zmq" if bad
              else "bench_rpc_ws: --trials must be at least 1", file=sys.stderr)
        raise SystemExit(2)
    seconds = float(args.duration.rstrip("s"))
    if not args.no_single:
        print(f"1 x 1, one call in flight, 64 B: median of {args.trials} trials "
              "(round trip p50 / p99; calls/s)")
        for layout in layouts:
            bare: list[dict[str, float]] = []
            ours: list[dict[str, float]] = []
            for _ in range(args.trials):  # interleaved: both see the same machine
                bare.append(bare_loop(layout, seconds))
                ours.append(one_in_flight(layout, args.duration))
            med = {name: {k: statistics.median(t[k] for t in trials) for k in trials[0]}
                   for name, trials in (("bare", bare), ("msgbench", ours))}
            b, m = med["bare"], med["msgbench"]
            print(f"  {layout:<6} bare websockets loop p50 {_us(b['p50'])} p99 {_us(b['p99'])} "
                  f"{b['calls_per_s']:8.0f}/s")
            print(f"  {layout:<6} msgbench --inflight 1 p50 {_us(m['p50'])} p99 {_us(m['p99'])} "
                  f"{m['calls_per_s']:8.0f}/s   x{m['p50'] / b['p50']:.1f} p50, "
                  f"x{m['p99'] / b['p99']:.1f} p99 of the bare loop", flush=True)
    if not args.no_search:
        print("8 x 2 open loop: highest rate per requester with p99 <= 10 ms, no timeouts")
        found: dict[str, int | None] = {}
        for layout in [REFERENCE, *layouts]:
            print(f"  {layout}:", flush=True)
            found[layout] = search(layout, args.duration)
        ref = found[REFERENCE]
        for layout, best in found.items():
            ratio = f"  {best / ref:.2f} of {REFERENCE}" if best and ref else ""
            print(f"  {layout:<6} -> {best if best is not None else f'below {START_RATE}'}/s per "
                  f"requester ({(best or 0) * 8}/s in all){ratio}", flush=True)


if __name__ == "__main__":
    main()

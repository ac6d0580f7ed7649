"""Request/reply: one call in flight next to a bare loop, and 8 x 2 capacity within 10 ms.

* **1 x 1, one call in flight** (``--inflight 1``, closed loop): round trip p50 / p99 and
  calls/s of msgbench for ``inproc`` and ``redis-rpc`` (``--rpc-reply list`` and
  ``pubsub``), each next to a bare loop of the same design in the same trial:
  inproc: an asyncio future answered by a responder task through a queue, on uvloop;
  redis: a requester process ``LPUSH``es a request carrying its reply list's name and
  ``BRPOP``s its reply; a responder process ``BRPOP``s requests and ``LPUSH``es (or
  ``PUBLISH``es) each reply; redis-py with hiredis, on a private redis-server.
* **8 requesters x 2 responders, open loop**: ``msgbench capacity`` finds the highest rate
  per requester with p99 <= 10 ms, nothing lost (a request without a reply in time is a
  loss) and the requesters on schedule (``--designs`` also takes ``zmq`` and ``ws`` rows).

Medians of ``--trials``; ratios msgbench / bare from the same trial.

    python3 benchmarks/bench_rpc.py [--trials 3] [--duration 2] [--skip-capacity]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from msgbench.kit.redis_server import private_server

RUN_TIMEOUT_S = 120
CAPACITY_BUDGET = "90s"
DESIGNS = {
    "inproc": ["-t", "inproc"],
    "redis-rpc list": ["-t", "redis-rpc", "--rpc-reply", "list"],
    "redis-rpc pubsub": ["-t", "redis-rpc", "--rpc-reply", "pubsub"],
}
CAPACITY_EXTRA = {
    "zmq reqrep": ["zmq", "--zmq-mode", "reqrep"],
    "zmq dealer": ["zmq", "--zmq-mode", "dealer"],
    "zmq rpc-broker": ["zmq", "--zmq-mode", "rpc-broker"],
    "ws": ["ws"],
    "ws bridged redis": ["ws", "--servers", "2", "--bridge", "redis", "--ws-placement", "cross"],
    "rabbitmq direct": ["rabbitmq", "--amqp-reply", "direct"],
    "rabbitmq queue": ["rabbitmq", "--amqp-reply", "queue"],
}


async def _bare_inproc(seconds: float) -> list[int]:
    queue: asyncio.Queue[asyncio.Future[bytes]] = asyncio.Queue()

    async def responder() -> None:
        while True:
            fut = await queue.get()
            fut.set_result(b"reply")

    task = asyncio.ensure_future(responder())
    loop = asyncio.get_running_loop()
    rtts: list[int] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.monotonic_ns()
        fut: asyncio.Future[bytes] = loop.create_future()
        queue.put_nowait(fut)
        await fut
        rtts.append(time.monotonic_ns() - t)
    task.cancel()
    return rtts


def bare_inproc(seconds: float) -> tuple[float, float, float]:
    """Calls/s, p50 and p99 (us) of the bare inproc loop."""
    import uvloop

    rtts = uvloop.run(_bare_inproc(seconds))
    return _figures(rtts, seconds)


def _figures(rtts: list[int], seconds: float) -> tuple[float, float, float]:
    a = np.array(rtts)
    return len(a) / seconds, float(np.percentile(a, 50)) / 1e3, float(np.percentile(a, 99)) / 1e3


def _role(role: str, url: str, reply: str, seconds: float) -> None:
    """One process of the bare redis loop: ``requester`` prints its round trips' figures."""
    import redis

    r = redis.Redis.from_url(url)
    if role == "responder":
        end = time.monotonic() + seconds + 2
        while time.monotonic() < end:
            got = r.brpop(["bare:req"], timeout=1)
            if got is None:
                continue
            raw = bytes(got[1]) if not isinstance(got[1], str) else got[1].encode()
            addr, _, body = raw.partition(b"|")
            if reply == "pubsub":
                r.publish(addr, body)
            else:
                r.lpush(addr, body)
        return
    sub = None
    if reply == "pubsub":
        sub = r.pubsub()  # type: ignore[no-untyped-call, unused-ignore]
        sub.subscribe("bare:rep")
        sub.get_message(timeout=1)
    rtts = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.monotonic_ns()
        r.lpush("bare:req", b"bare:rep|" + bytes(64))
        if sub is not None:
            while sub.get_message(timeout=1) is None:
                pass
        else:
            r.brpop(["bare:rep"], timeout=1)
        rtts.append(time.monotonic_ns() - t)
    print(json.dumps(_figures(rtts, seconds)))


def bare_redis(reply: str, seconds: float) -> tuple[float, float, float]:
    """Calls/s, p50 and p99 (us) of the bare redis loop on a private redis-server."""
    with private_server() as server:
        url = server.url
        me = [sys.executable, __file__, "--role"]
        resp = subprocess.Popen([*me, "responder", url, reply, str(seconds)])
        try:
            out = subprocess.run([*me, "requester", url, reply, str(seconds)],
                                 capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                                 check=True).stdout
        finally:
            resp.wait(timeout=RUN_TIMEOUT_S)
    rate, p50, p99 = json.loads(out)
    return float(rate), float(p50), float(p99)


def run_msgbench(flags: list[str], seconds: float) -> tuple[float, float, float]:
    """Calls/s, p50 and p99 (us) of msgbench at 1 x 1, one call in flight."""
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run(
            [sys.executable, "-m", "msgbench", "run", "--pattern", "rpc", *flags, "--pubs", "1",
             "--subs", "1", "--inflight", "1", "--duration", f"{seconds}s", "--warmup",
             "500ms", "--json", "--quiet", "--out", out],
            capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"msgbench {' '.join(flags)} failed: {proc.stderr.strip()}")
    s = json.loads(proc.stdout)["summary"]
    if s["timeouts"] or s["lost"]:
        raise SystemExit(f"{' '.join(flags)}: {s['timeouts']} timeouts: must be none")
    lat = s["latency_ns"]
    return float(s["deliveries_per_s"]), lat["p50"] / 1e3, lat["p99"] / 1e3


def capacity(target: list[str]) -> dict[str, Any]:
    """``msgbench capacity`` at 8 x 2, rpc, p99 <= 10 ms: its result document."""
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run(
            [sys.executable, "-m", "msgbench", "capacity", "-t", " ".join(target), "-p", "8",
             "-s", "2", "--slo", "10ms", "--start", "200", "--budget", CAPACITY_BUDGET,
             "-d", "2s", "-w", "500ms", "--no-half", "-o", out, "--pattern", "rpc"],
            capture_output=True, text=True, timeout=600, check=False)
        if proc.returncode != 0:
            return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
        found = sorted(Path(out).glob("*.json"))
        doc: dict[str, Any] = json.loads(found[0].read_text())
        return doc


def main() -> None:
    """Run the trials (or, with ``--role``, one process of the bare redis loop)."""
    if len(sys.argv) > 1 and sys.argv[1] == "--role":
        _role(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--duration", type=float, default=2.0, help="seconds per trial")
    ap.add_argument("--skip-capacity", action="store_true")
    args = ap.parse_args()
    bares = {"inproc": lambda: bare_inproc(args.duration),
             "redis-rpc list": lambda: bare_redis("list", args.duration),
             "redis-rpc pubsub": lambda: bare_redis("pubsub", args.duration)}
    rows: dict[str, list[tuple[tuple[float, float, float], tuple[float, float, float]]]] = {}
    print(f"1 x 1, one call in flight, {args.duration:g} s per trial")
    for i in range(args.trials):
        for name, flags in DESIGNS.items():
            ref = bares[name]()
            got = run_msgbench(flags, args.duration)
            rows.setdefault(name, []).append((got, ref))
            print(f"trial {i + 1} {name:17} msgbench {got[0]:8,.0f}/s p50 {got[1]:7.1f} us "
                  f"p99 {got[2]:7.1f} us | bare {ref[0]:8,.0f}/s p50 {ref[1]:7.1f} us "
                  f"p99 {ref[2]:7.1f} us", flush=True)
    print("\nmedians (ratio msgbench / bare, same trial):")
    for name, pairs in rows.items():
        m = [statistics.median(g[k] for g, _ in pairs) for k in range(3)]
        b = [statistics.median(r[k] for _, r in pairs) for k in range(3)]
        ratio = statistics.median(g[1] / r[1] for g, r in pairs)
        print(f"  {name:17} p50 {m[1]:7.1f} us p99 {m[2]:7.1f} us {m[0]:8,.0f} calls/s | bare "
              f"p50 {b[1]:7.1f} us p99 {b[2]:7.1f} us {b[0]:8,.0f} calls/s | p50 x{ratio:.2f}")
    if args.skip_capacity:
        return
    print("\n8 requesters x 2 responders, open loop: highest rate per requester with p99 <= "
          "10 ms, no timeouts")
    targets = {n: [f[1], *f[2:]] for n, f in DESIGNS.items()} | CAPACITY_EXTRA
    for name, target in targets.items():
        doc = capacity(target)
        if "error" in doc:
            print(f"  {name:17} not measured: {doc['error']}")
            continue
        rate = doc.get("capacity_rate")
        total = f"{rate * 8:,.0f} requests/s in all" if rate else "none passed"
        print(f"  {name:17} {rate or 0:8,.0f}/s per requester ({total}); stopped: "
              f"{doc.get('stopped')}; limit: {doc.get('limit') or '-'}")


if __name__ == "__main__":
    main()

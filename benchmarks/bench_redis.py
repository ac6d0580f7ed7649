"""Speed check of the Redis pub/sub target.

1 -> 1, 64 B, closed loop: interleaved trials of

* a reference without msgbench: one publisher process writing pipelined
  ``PUBLISH`` batches (128 per write, at most 4096 replies owed, replies only
  counted) and one subscriber process parsing with ``hiredis.Reader`` and
  counting payloads, both on uvloop, against a private redis-server;
  both sides lift the pub/sub output-buffer limit (see :data:`UNLIMITED`);
* ``msgbench run --target redis --pubs 1 --subs 1 --size 64 --rate max``,
  every latency recorded;

then the medians and their ratio. With ``--fanout``: 4 -> 32, 64 B, the
highest fixed rate the subscribers keep up with (doubling from
:data:`RAMP_START`), then a run at half of it, reporting deliveries/s,
redis-server CPU and p99. The machine is shared and noisy:
only figures measured in one go compare.

    python3 benchmarks/bench_redis.py [--trials 3] [--duration 3s] [--fanout]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import hiredis
import uvloop

from msgbench.kit.redis_server import private_server

BATCH = 128
MAX_OWED = 4096
PAYLOAD = bytes(64)
SETTLE_S = 0.5
UNLIMITED = "pubsub 0 0 0"
"""Closed loop, publishers outrun subscribers and Redis would drop them at its output-buffer
limit (32 MB by default) within seconds: both sides of the 1 -> 1 comparison lift it, so
that what is measured is the subscriber's throughput, not when Redis gave up."""
RAMP_START = 250
"""First fixed rate (per publisher) of the 4 -> 32 ramp; doubled until subscribers fall behind."""
KEEP_UP = 0.95
KEEP_UP_P99_NS = 100_000_000


def _addr(url: str) -> tuple[str, int]:
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    return host, int(port)


class _Sub(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.count = 0
        self.subscribed = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        n = 0
        while (reply := self.reader.gets()) is not False:
            if reply[0] == b"message":
                n += 1
            elif not self.subscribed.done():
                self.subscribed.set_result(None)
        self.count += n


async def _subscriber(url: str, seconds: float, ready: Any, out: Any) -> None:
    host, port = _addr(url)
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_connection(_Sub, host, port)
    transport.write(b"*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nt0\r\n")
    await proto.subscribed
    ready.set()
    while proto.count == 0:
        await asyncio.sleep(0.001)
    await asyncio.sleep(SETTLE_S)  # let the pipeline fill before timing
    start, first = time.perf_counter(), proto.count
    await asyncio.sleep(seconds)
    out.put((proto.count - first) / (time.perf_counter() - start))
    transport.close()


class _Pub(asyncio.Protocol):
    def __init__(self) -> None:
        self.owed = 0
        self.waiter: asyncio.Future[None] | None = None

    def data_received(self, data: bytes) -> None:
        self.owed -= data.count(b"\n")  # integer replies only: one line each
        if self.waiter is not None and self.owed <= MAX_OWED // 2:
            self.waiter.set_result(None)
            self.waiter = None


async def _publisher(url: str, seconds: float) -> None:
    host, port = _addr(url)
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_connection(_Pub, host, port)
    head = b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nt0\r\n$64\r\n"
    end = time.perf_counter() + seconds
    seq = 0
    while time.perf_counter() < end:
        # distinct payloads, as a real publisher builds them
        batch = [(seq + k).to_bytes(8, "little") + PAYLOAD[8:] for k in range(BATCH)]
        seq += BATCH
        transport.write(head + (b"\r\n" + head).join(batch) + b"\r\n")
        proto.owed += BATCH
        if proto.owed > MAX_OWED:
            proto.waiter = loop.create_future()
            await proto.waiter
        await asyncio.sleep(0)
    transport.close()


def _sub_main(url: str, seconds: float, ready: Any, out: Any) -> None:
    uvloop.run(_subscriber(url, seconds, ready, out))


def reference(seconds: float) -> float:
    """Deliveries/s of the bare pipelined-RESP + hiredis loop (see the module docstring)."""
    ctx = mp.get_context("spawn")
    with private_server(["--client-output-buffer-limit", UNLIMITED]) as server:
        ready, out = ctx.Event(), ctx.Queue()
        proc = ctx.Process(target=_sub_main, args=(server.url, seconds, ready, out))
        proc.start()
        ready.wait(10)
        uvloop.run(_publisher(server.url, seconds + SETTLE_S + 0.5))
        rate = float(out.get(timeout=30))
        proc.join(10)
    return rate


def msgbench_run(pubs: int, subs: int, duration: str, rate: str = "max",
                 extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """One ``msgbench run --target redis``; returns the result document."""
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run(
            [sys.executable, "-m", "msgbench", "run", "--target", "redis", "--pubs", str(pubs),
             "--subs", str(subs), "--size", "64", "--rate", rate, "--duration", duration,
             "--warmup", "1s", "--json", "--quiet", "--out", out, *extra],
            capture_output=True, text=True, check=False,
        )
    if proc.returncode != 0:
        raise SystemExit(f"msgbench run failed: {proc.stderr.strip()}")
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def _redis_cpu(doc: dict[str, Any]) -> float:
    return float(sum(p["cpu_s"] for p in doc["processes"]
                     if p["role"].startswith("redis-server")))


def one_to_one(trials: int, duration: str) -> None:
    """Interleaved trials of the reference and msgbench, 1 -> 1."""
    seconds = float(duration.rstrip("s"))
    ref, ours = [], []
    for i in range(trials):
        ref.append(reference(seconds))
        doc = msgbench_run(1, 1, duration, extra=("--redis-buffer-limit", "0"))
        s = doc["summary"]
        if doc["status"] != "ok" or s["latency_ns"]["count"] != s["delivered"]:
            print(f"  msgbench trial {i + 1}: {doc['status']} {doc['reasons']}")
        ours.append(float(s["deliveries_per_s"]))
        print(f"trial {i + 1}: reference {ref[-1] / 1e6:.3f} M/s   "
              f"msgbench {ours[-1] / 1e6:.3f} M/s   "
              f"(redis-server {_redis_cpu(doc) / s['duration_s']:.2f} cores)", flush=True)
    r, o = statistics.median(ref), statistics.median(ours)
    print(f"median reference (pipelined RESP + hiredis, no msgbench): {r / 1e6:.3f} M deliveries/s")
    print(f"median msgbench redis 1->1, every latency recorded:       {o / 1e6:.3f} M deliveries/s")
    print(f"ratio msgbench / reference:                               {o / r:.2f}")


def _keeps_up(doc: dict[str, Any], offered: float) -> bool:
    s = doc["summary"]
    return bool(doc["status"] == "ok" and s["deliveries_per_s"] >= KEEP_UP * offered
                and s["latency_ns"]["p99"] <= KEEP_UP_P99_NS)


def fanout(duration: str, pubs: int = 4, subs: int = 32) -> None:
    """4 -> 32: the highest rate the subscribers keep up with, then half of it.

    Closed loop is no maximum here: Redis pub/sub has no backpressure, so four
    flat-out publishers outrun 32 subscribers until Redis drops them at the
    output-buffer limit. The maximum is found by doubling a fixed rate until
    the run degrades, falls short of the offered load or its p99 passes
    :data:`KEEP_UP_P99_NS`.
    """
    rate, best, best_doc = RAMP_START, 0, None
    while True:
        doc = msgbench_run(pubs, subs, duration, rate=str(rate))
        offered = rate * pubs * subs
        s = doc["summary"]
        print(f"  {pubs}->{subs} at {rate} msgs/s per publisher: {s['deliveries_per_s'] / 1e6:.3f}"
              f" M deliveries/s, {doc['status']}, p99 {s['latency_ns']['p99'] / 1e3:.0f} us",
              flush=True)
        if not _keeps_up(doc, offered):
            break
        best, best_doc = rate, doc
        rate *= 2
    if best_doc is None:
        print(f"{pubs}->{subs}: subscribers fell behind even at {RAMP_START} msgs/s per publisher")
        return
    top = best_doc["summary"]
    print(f"{pubs}->{subs} max kept up: {top['deliveries_per_s'] / 1e6:.3f} M deliveries/s "
          f"({best} msgs/s per publisher; the next doubling did not keep up), redis-server "
          f"{_redis_cpu(best_doc) / top['duration_s']:.2f} cores")
    half_rate = max(1, best // 2)
    half = msgbench_run(pubs, subs, duration, rate=str(half_rate))
    h = half["summary"]
    print(f"{pubs}->{subs} at 50% ({half_rate} msgs/s per publisher): "
          f"{h['deliveries_per_s'] / 1e6:.3f} M deliveries/s, status {half['status']}, "
          f"redis-server {_redis_cpu(half) / h['duration_s']:.2f} cores, "
          f"p50 {h['latency_ns']['p50'] / 1e3:.0f} us, p99 {h['latency_ns']['p99'] / 1e3:.0f} us")


def main() -> None:
    """Parse arguments and run the selected checks."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--duration", default="3s")
    ap.add_argument("--fanout", action="store_true", help="also run the 4 -> 32 check")
    ap.add_argument("--only-fanout", action="store_true", help="skip the 1 -> 1 trials")
    args = ap.parse_args()
    if not args.only_fanout:
        one_to_one(args.trials, args.duration)
    if args.fanout or args.only_fanout:
        fanout(args.duration)


if __name__ == "__main__":
    main()

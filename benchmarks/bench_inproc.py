"""Speed check of the driver on the in-process target.

Runs, interleaved, an uninstrumented asyncio fan-out loop (one publisher
building a distinct 64-byte message each time and handing it to 8 subscriber
queues; each subscriber calls a per-message handler that only counts: no
envelope, no clock, no accounting)
and ``msgbench run --target inproc --pubs 1 --subs 8 --size 64 --rate max``
with every latency recorded, and prints the medians and their ratio. This
2-core machine is shared and noisy, so only the ratio measured in one go means
much.

    python3 benchmarks/bench_inproc.py [--trials 5] [--duration 5s] [--subs 8]
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
from collections import deque

import uvloop

BATCH = 128


async def _reference(subs: int, seconds: float) -> float:
    """Deliveries/s of a bare fan-out loop shaped like the inproc target."""
    queues: list[deque[bytes]] = [deque() for _ in range(subs)]
    events = [asyncio.Event() for _ in range(subs)]
    received = [0] * subs
    pad = bytes(56)

    async def subscriber(i: int) -> None:
        q, ev = queues[i], events[i]
        count = 0

        def on_message(msg: bytes) -> None:
            nonlocal count
            count += 1

        while True:
            await ev.wait()
            ev.clear()
            batch = list(q)
            q.clear()
            for msg in batch:
                on_message(msg)
            received[i] = count

    tasks = [asyncio.ensure_future(subscriber(i)) for i in range(subs)]
    start = time.perf_counter()
    end = start + seconds
    seq = 0
    while time.perf_counter() < end:
        batch = [(seq + k).to_bytes(8, "little") + pad for k in range(BATCH)]
        seq += BATCH
        for q, ev in zip(queues, events, strict=True):
            q.extend(batch)
            ev.set()
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    elapsed = time.perf_counter() - start
    for t in tasks:
        t.cancel()
    return sum(received) / elapsed


def _msgbench(subs: int, duration: str) -> float:
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "msgbench",
                "run",
                "--target",
                "inproc",
                "--pubs",
                "1",
                "--subs",
                str(subs),
                "--size",
                "64",
                "--rate",
                "max",
                "--duration",
                duration,
                "--warmup",
                "1s",
                "--json",
                "--quiet",
                "--out",
                out,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    doc = json.loads(proc.stdout)
    assert doc["status"] == "ok", doc["reasons"]
    assert doc["summary"]["latency_ns"]["count"] == doc["summary"]["delivered"]
    return float(doc["summary"]["deliveries_per_s"])


def main() -> None:
    """Run the trials and print the medians."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--duration", default="5s")
    ap.add_argument("--subs", type=int, default=8)
    args = ap.parse_args()
    seconds = float(args.duration.rstrip("s"))
    ref, ours = [], []
    for i in range(args.trials):
        ref.append(uvloop.run(_reference(args.subs, seconds)))
        ours.append(_msgbench(args.subs, args.duration))
        print(
            f"trial {i + 1}: reference {ref[-1] / 1e6:.2f} M/s   msgbench {ours[-1] / 1e6:.2f} M/s",
            flush=True,
        )
    r, o = statistics.median(ref), statistics.median(ours)
    print(f"median reference (bare asyncio fan-out): {r / 1e6:.2f} M deliveries/s")
    print(f"median msgbench inproc, all recorded:    {o / 1e6:.2f} M deliveries/s")
    print(f"ratio msgbench / reference:              {o / r:.2f}")


if __name__ == "__main__":
    main()

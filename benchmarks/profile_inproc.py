"""Where the time goes on the inproc hot path: the driver's own clients under cProfile.

Builds, in this one process, what an ``inproc`` worker builds (1 publisher, 8
subscribers, 64 B, closed loop) and profiles a few seconds of it, including
the 100 ms histogram flushes a worker does.

    python3 benchmarks/profile_inproc.py [--seconds 3] [--subs 8]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time

import uvloop

from msgbench.accounting.histogram import Histogram
from msgbench.run.publisher import PublisherRunner
from msgbench.run.sink import Buffers, SubscriberSink
from msgbench.targets.inproc.target import InprocTarget
from msgbench.workload.config import RunConfig

FLUSH_INTERVAL_S = 0.1


async def _run(seconds: float, subs: int) -> int:
    cfg = RunConfig(pubs=1, subs=subs, size=64, rate=None)
    client = InprocTarget().client({}, {})
    buffers = Buffers()
    sinks = [SubscriberSink(i, 0, buffers, 0.0, record_raw=False) for i in range(subs)]
    for s in sinks:
        await client.subscribe(s.sub_id, ["t0"], s)
    runner = PublisherRunner(0, await client.publisher(0), cfg, buffers)
    hist = Histogram()

    async def flush() -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            hist.record_array(buffers.latency)
            del buffers.latency[:]

    flusher = asyncio.ensure_future(flush())
    now = time.monotonic_ns()
    await runner.run(now, now, now + int(seconds * 1e9))
    await asyncio.sleep(0.05)
    flusher.cancel()
    return sum(s.delivered for s in sinks)


def main() -> None:
    """Profile and print the top functions by own time."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--subs", type=int, default=8)
    args = ap.parse_args()
    prof = cProfile.Profile()
    prof.enable()
    delivered = uvloop.run(_run(args.seconds, args.subs))
    prof.disable()
    print(f"{delivered / args.seconds / 1e6:.2f} M deliveries/s under the profiler")
    pstats.Stats(prof).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()

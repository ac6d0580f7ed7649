"""The inproc task design next to a bare asyncio loop: the ceiling of task distribution.

2 producers x 4 workers, 64 B, zero work, closed loop (``--rate max``) in one process:

* **msgbench**: ``msgbench run -t inproc --pattern tasks`` (one shared queue; each member
  takes up to 16 tasks, has the driver account them, takes again);
* **bare**: 2 producer coroutines put 64 B payloads on one ``asyncio.Queue`` in batches,
  4 worker coroutines take up to 16 at a time and count them, on uvloop, as msgbench's
  worker runs.

Tasks/s is what the workers took in the window; tasks per CPU-second divides it by the CPU
of every process (msgbench: coordinator and worker; bare: the one process). Medians of
``--trials``; ratios msgbench / bare from the same trial.

    python3 benchmarks/bench_tasks_inproc.py [--trials 3] [--duration 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time

PUBS, SUBS, SIZE, TAKE = 2, 4, 64, 16
BATCH = 64
RUN_TIMEOUT_S = 120


async def _bare_loop(seconds: float) -> int:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    done = [0]
    payload = bytes(SIZE)
    end = time.monotonic() + seconds

    async def producer() -> None:
        while time.monotonic() < end:
            if queue.qsize() < 100_000:
                for _ in range(BATCH):
                    queue.put_nowait(payload)
            await asyncio.sleep(0)

    async def worker() -> None:
        while time.monotonic() < end:
            try:
                item = await asyncio.wait_for(queue.get(), 0.1)
            except TimeoutError:
                continue
            got = [item]
            while len(got) < TAKE and not queue.empty():
                got.append(queue.get_nowait())
            done[0] += len(got)

    await asyncio.gather(*(producer() for _ in range(PUBS)), *(worker() for _ in range(SUBS)))
    return done[0]


def bare(seconds: float) -> tuple[float, float]:
    """The bare loop's tasks/s and tasks per CPU-second."""
    import uvloop

    before = resource.getrusage(resource.RUSAGE_SELF)
    n = uvloop.run(_bare_loop(seconds))
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return n / seconds, n / cpu


def run_msgbench(seconds: float) -> tuple[float, float]:
    """msgbench's tasks/s and tasks per CPU-second (the ledger must be exact)."""
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run(
            [sys.executable, "-m", "msgbench", "run", "-t", "inproc", "--pattern", "tasks",
             "--pubs", str(PUBS), "--subs", str(SUBS), "--size", str(SIZE), "--rate", "max",
             "--duration", f"{seconds}s", "--warmup", "0s", "--json", "--quiet",
             "--out", out], capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"msgbench run failed: {proc.stderr.strip()}")
    s = json.loads(proc.stdout)["summary"]
    if s["lost"] or s["duplicated"]:
        raise SystemExit(f"lost {s['lost']}, duplicated {s['duplicated']}: must be exact")
    return float(s["deliveries_per_s"]), float(s["msgs_per_cpu_s"])


def main() -> None:
    """Run the trials and print medians and ratios."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per trial")
    args = ap.parse_args()
    print(f"inproc tasks: {PUBS} producers x {SUBS} workers, {SIZE} B, zero work, closed loop, "
          f"{args.duration:g} s per trial")
    ours, refs = [], []
    for i in range(args.trials):
        ref = bare(args.duration)
        got = run_msgbench(args.duration)
        refs.append(ref)
        ours.append(got)
        print(f"trial {i + 1}: msgbench {got[0]:10,.0f} tasks/s {got[1]:10,.0f} /CPU-s   "
              f"bare {ref[0]:10,.0f} tasks/s {ref[1]:10,.0f} /CPU-s", flush=True)
    m = [statistics.median(x[k] for x in ours) for k in (0, 1)]
    r = [statistics.median(x[k] for x in refs) for k in (0, 1)]
    ratio = [statistics.median(o[k] / b[k] for o, b in zip(ours, refs, strict=True))
             for k in (0, 1)]
    print(f"\nmedians: msgbench {m[0]:,.0f} tasks/s ({ratio[0]:.2f} x bare), {m[1]:,.0f} "
          f"tasks/CPU-s ({ratio[1]:.2f} x); bare {r[0]:,.0f} tasks/s, {r[1]:,.0f} tasks/CPU-s")


if __name__ == "__main__":
    main()

"""How precisely, and at what CPU cost, msgbench's open loop keeps its schedule.

Part 1 (``pacing``) drives :class:`~msgbench.run.publisher.PublisherRunner` on uvloop with
publishers that hand each message to nothing (no target): publish delay (actual - intended
send time) p50 / p99 / p999, and the loop thread's CPU per message sent, against closed
loop's measured in the same run, at each rate x publishers. Pacers compared: ``timerfd+spin``
(the default: a timerfd armed early by the timer's own lateness, the rest spun within a CPU
budget), ``timerfd`` (the timer alone, no spin) and ``sleep`` (asyncio.sleep of at least
1 ms: the old send tick).

Part 2 (``runs``) runs ``msgbench run -t T --rate 10k -d 3s -w 1s`` for inproc, zmq and
redis 1 x 1 and prints p50 from intended next to p50 from actual send and the publish
delay; with ``--baseline-python`` (the interpreter of another msgbench install, e.g. main
before this change) the two installs take turns trial by trial, so both see the same
machine.

Each part prints the machine's CPU pressure over it (``/proc/pressure/cpu`` some): on a
shared machine the figures mean little above a few per cent.

    python3 benchmarks/bench_pacing.py [--seconds 2] [--trials 3] [--part pacing|runs|all]
        [--baseline-python /path/to/other/venv/bin/python]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import uvloop

from msgbench.api.target import Publisher
from msgbench.results.costs import read_pressure
from msgbench.run.pacer import Pacer, SleepPacer, TimerfdPacer
from msgbench.run.publisher import PublisherRunner
from msgbench.run.sink import Buffers
from msgbench.workload.config import RunConfig

RATES = (1_000, 10_000, 20_000, 100_000)
PUBLISHERS = (1, 4)
WARMUP_S = 0.2
NS = 1_000_000_000
RUN_TARGETS = ("inproc", "zmq", "redis")


class NullPublisher(Publisher):
    """Takes each batch and drops it: what is left is the driver's own cost."""

    async def publish(self, topic: str, payloads: Sequence[bytes]) -> None:
        """See :class:`Publisher`."""

    async def publish_block(self, topic: str, block: bytes, count: int, size: int) -> None:
        """See :class:`Publisher`."""


PACERS: dict[str, Callable[[], Pacer]] = {
    "timerfd+spin": TimerfdPacer,
    "timerfd": lambda: TimerfdPacer(max_lead_ns=0),
    "sleep": SleepPacer,
}


async def _drive(rate: float | None, pubs: int, seconds: float, pacer: str) -> tuple[
        array[int], int, int]:
    """Publish for ``seconds``; returns (publish delays, messages sent, loop thread CPU ns)."""
    config = RunConfig(rate=rate, pubs=pubs, duration_s=seconds, warmup_s=WARMUP_S)
    buffers = Buffers()
    # one pacer for the worker's publishers, as the worker has
    shared = PACERS[pacer]() if rate is not None else None
    runners = [PublisherRunner(p, NullPublisher(), config, buffers, pacer=shared)
               for p in range(pubs)]
    start = time.monotonic_ns() + NS // 50
    m_start = start + int(WARMUP_S * NS)
    m_end = m_start + int(seconds * NS)
    cpu0 = [0]

    async def mark() -> None:
        await asyncio.sleep((m_start - time.monotonic_ns()) / NS)
        cpu0[0] = time.thread_time_ns()

    marker = asyncio.ensure_future(mark())
    await asyncio.gather(*(r.run(start, m_start, m_end) for r in runners))
    cpu = time.thread_time_ns() - cpu0[0]
    await marker
    if shared is not None:
        shared.close()
    return buffers.publish_delay, sum(sum(r.measured) for r in runners), cpu


def _pct(values: array[int], q: float) -> float:
    return float(np.percentile(np.frombuffer(values, np.int64), q)) if values else float("nan")


def pacing(seconds: float, trials: int, pacers: Sequence[str]) -> None:
    """Part 1: print a table of publish delay and CPU per message, medians over trials."""
    print(f"publish delay and loop-thread CPU, {seconds:g} s per trial, median of {trials}")
    print(f"{'pacer':<13} {'pubs':>4} {'rate/pub':>9} {'p50 us':>8} {'p99 us':>8} "
          f"{'p999 us':>8} {'core %':>7} {'CPU ns/msg':>10} {'closed ns/msg':>13} "
          f"{'pacing ns/msg':>13}")
    for pubs in PUBLISHERS:
        for rate in RATES:
            for name in pacers:
                rows = []
                for _ in range(trials):
                    # the closed-loop reference, measured next to each trial
                    _, n_c, cpu_c = uvloop.run(_drive(None, pubs, seconds / 2, name))
                    delays, n, cpu = uvloop.run(_drive(rate, pubs, seconds, name))
                    rows.append((_pct(delays, 50), _pct(delays, 99), _pct(delays, 99.9),
                                 cpu / (seconds * NS), cpu / max(n, 1), cpu_c / max(n_c, 1)))
                med = [statistics.median(r[k] for r in rows) for k in range(6)]
                print(f"{name:<13} {pubs:>4} {rate:>9,} {med[0] / 1e3:>8.1f} "
                      f"{med[1] / 1e3:>8.1f} {med[2] / 1e3:>8.1f} {med[3] * 100:>6.1f}% "
                      f"{med[4]:>10.0f} {med[5]:>13.0f} {med[4] - med[5]:>13.0f}", flush=True)


def _one_run(python: str, target: str) -> tuple[float, ...] | str:
    """p50 intended, p50 actual, delay p50, delay p99 (ns) of one run, or why it failed."""
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run(
            [python, "-m", "msgbench", "run", "-t", target, "--rate", "10k",
             "-d", "3s", "-w", "1s", "-q", "--json", "-o", out],
            capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return (proc.stderr.strip().splitlines() or ["no output"])[-1]
    s = json.loads(proc.stdout)["summary"]
    return (s["latency_ns"]["p50"], s["latency_uncorrected_ns"]["p50"],
            s["publish_delay_ns"]["p50"], s["publish_delay_ns"]["p99"])


def runs(trials: int, baseline: str | None) -> None:
    """Part 2: ``msgbench run -t T --rate 10k -d 3s -w 1s`` per target and install, medians."""
    installs = {"this": sys.executable, **({"baseline": baseline} if baseline else {})}
    print(f"\nmsgbench run -t T --rate 10k -d 3s -w 1s, median of {trials}")
    print(f"{'target':<8} {'install':<9} {'p50 intended':>13} {'p50 actual':>11} "
          f"{'delay p50':>10} {'delay p99':>10}")
    for target in RUN_TARGETS:
        rows: dict[str, list[tuple[float, ...]]] = {k: [] for k in installs}
        for _ in range(trials):
            for name, python in installs.items():  # taking turns: the same machine for both
                got = _one_run(python, target)
                if isinstance(got, str):
                    print(f"{target} ({name}): run failed: {got}")
                else:
                    rows[name].append(got)
        for name, got_rows in rows.items():
            if got_rows:
                med = [statistics.median(r[k] for r in got_rows) / 1e3 for k in range(4)]
                print(f"{target:<8} {name:<9} {med[0]:>10.1f} us {med[1]:>8.1f} us "
                      f"{med[2]:>7.1f} us {med[3]:>7.1f} us", flush=True)


def main() -> None:
    """Parse arguments and run the chosen parts."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--part", choices=("pacing", "runs", "all"), default="all")
    ap.add_argument("--pacers", default="timerfd+spin,timerfd,sleep")
    ap.add_argument("--baseline-python", default=None,
                    help="interpreter of another msgbench install to compare runs against")
    a = ap.parse_args()
    names = [p for p in a.pacers.split(",") if p]
    bad = [p for p in names if p not in PACERS]
    if bad or a.seconds <= 0 or a.trials < 1:
        ap.error(f"unknown pacer {bad[0]}" if bad else "--seconds and --trials must be positive")
    if a.baseline_python and not Path(a.baseline_python).exists():
        ap.error(f"no interpreter at {a.baseline_python}")
    if a.part in ("pacing", "all"):
        with _pressure("pacing"):
            pacing(a.seconds, a.trials, names)
    if a.part in ("runs", "all"):
        with _pressure("runs"):
            runs(a.trials, a.baseline_python)


@contextlib.contextmanager
def _pressure(part: str) -> Iterator[None]:
    """Print the machine's CPU pressure ('some') over the block."""
    a, t0 = read_pressure(), time.monotonic()
    yield
    b, t1 = read_pressure(), time.monotonic()
    if a is not None and b is not None:
        print(f"[{part}: CPU pressure {(b[0] - a[0]) / 1e6 / (t1 - t0) * 100:.0f} % of the "
              "time: some task of the machine waited for a CPU]")


if __name__ == "__main__":
    main()

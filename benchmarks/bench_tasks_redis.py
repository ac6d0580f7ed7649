"""Speed check of the Redis task designs: 2 producers x 4 workers, 64 B tasks, zero work.

For each design (``brpop``, ``blmove``: the ``redis-list`` target; ``group``:
``redis-streams`` consumer groups), interleaved trials of

* a bare loop of the same design without msgbench: 2 producer processes
  pacing pipelined ``LPUSH`` / ``XADD`` batches every :data:`TICK_S`, 4 worker
  processes on blocking sockets parsing with ``hiredis``: ``BRPOP`` + ``RPOP n``;
  ``BLMOVE`` + ``LMOVE`` x (n-1) then ``LREM`` each; ``XREADGROUP COUNT n`` then one
  ``XACK`` per read (n = 10, the targets' default prefetch), against a private
  redis-server;
* ``msgbench run --pattern tasks`` of that design at the same offered rate;

each reporting tasks/s done inside the measured window and tasks per CPU-second
(every process: producers, workers, redis-server, and msgbench's coordinator),
then the medians and the ratio msgbench / bare. Both sides are open loop at
the same rate, below what the workers can do, so the figure that tells them
apart is the CPU per task. The machine is shared and noisy: only figures
measured in one go compare.

    python3 benchmarks/bench_tasks_redis.py [--trials 3] [--duration 3s] [--rate 5k]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import hiredis
import psutil

from msgbench.kit.redis_server import private_server
from msgbench.kit.resp import command, command_head, pipeline

PRODUCERS = 2
WORKERS = 4
COUNT = 10
PAYLOAD = bytes(64)
TICK_S = 0.002
"""The bare producers' send period: every tick they send what became due."""
SETTLE_S = 1.0
"""Time before the measured window for every process to be running."""
DRAIN_S = 0.5
BLOCK_S = 0.1
QUEUE = "q"
STREAM = "s"
GROUP = "g"
DESIGNS = {
    "brpop": ["-t", "redis-list", "--list-mode", "brpop"],
    "blmove": ["-t", "redis-list", "--list-mode", "blmove"],
    "group": ["-t", "redis-streams"],
}


def _parse_rate(text: str) -> float:
    t = text.lower()
    return float(t[:-1]) * 1000 if t.endswith("k") else float(t)


def _parse_s(text: str) -> float:
    return float(text[:-2]) / 1000 if text.endswith("ms") else float(text.rstrip("s"))


class _Conn:
    """A blocking RESP connection: write commands, read a number of replies."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = hiredis.Reader()

    def call(self, data: bytes, replies: int) -> list[Any]:
        self.sock.sendall(data)
        out: list[Any] = []
        while len(out) < replies:
            reply = self.reader.gets()
            if reply is False:
                self.reader.feed(self.sock.recv(1 << 16))
                continue
            out.append(reply)
        return out


def _window(ready: Any, go: Any, when: Any, seconds: float) -> tuple[float, float]:
    """Say ready, wait for the parent's go, return the measured window (wall clock)."""
    ready.put(None)
    go.wait()
    return when.value, when.value + seconds


def _producer(design: str, port: int, rate: float, sync: tuple[Any, Any, Any, float],
              out: Any) -> None:
    conn = _Conn(port)
    start, end = _window(*sync)
    head = (command_head("XADD", STREAM, "*", "d") if design == "group"
            else command_head("LPUSH", QUEUE))
    sent = 0
    t0 = start - SETTLE_S
    cpu0 = 0.0
    while True:
        now = time.time()
        if now >= end:
            break
        if not cpu0 and now >= start:
            cpu0 = time.process_time()
        due = int((now - t0) * rate) - sent
        if due > 0:
            conn.call(pipeline(head, [PAYLOAD] * due), due)
            sent += due
        time.sleep(TICK_S)
    out.put(("producer", time.process_time() - cpu0, 0))


def _worker(design: str, port: int, name: str, sync: tuple[Any, Any, Any, float],
            out: Any) -> None:
    conn = _Conn(port)
    start, end = _window(*sync)
    proc = f"{QUEUE}:proc:{name}"
    if design == "brpop":
        take, calls = command("BRPOP", QUEUE, str(BLOCK_S)) + command("RPOP", QUEUE, COUNT - 1), 2
    elif design == "blmove":
        take = (command("BLMOVE", QUEUE, proc, "RIGHT", "LEFT", str(BLOCK_S))
                + command("LMOVE", QUEUE, proc, "RIGHT", "LEFT") * (COUNT - 1))
        calls = COUNT
    else:
        take = command("XREADGROUP", "GROUP", GROUP, name, "COUNT", COUNT, "BLOCK",
                       int(BLOCK_S * 1000), "STREAMS", STREAM, ">")
        calls = 1
    lrem = command_head("LREM", proc, -1)
    done = 0
    cpu0 = 0.0
    cpu1 = 0.0
    owed = 0  # replies to the acks sent with the last take
    while True:
        now = time.time()
        if now >= end + DRAIN_S:
            break
        if not cpu0 and now >= start:
            cpu0 = time.process_time()
        if not cpu1 and now >= end:
            cpu1 = time.process_time()
        replies = conn.call(take, calls + owed)[owed:]
        owed = 0
        ack = b""
        if design == "brpop":
            items = ([replies[0][1]] if replies[0] else []) + (replies[1] or [])
        elif design == "blmove":
            items = [r for r in replies if r is not None]
            ack, owed = pipeline(lrem, items), len(items)
        else:
            entries = replies[0][0][1] if replies[0] else []
            items = [e[1][1] for e in entries]
            if entries:
                ack, owed = command("XACK", STREAM, GROUP, *(e[0] for e in entries)), 1
        if start <= now < end:
            done += len(items)
        if ack:
            conn.sock.sendall(ack)  # its replies are read with the next take's
    out.put(("worker", (cpu1 or time.process_time()) - cpu0, done))


def bare(design: str, rate: float, seconds: float) -> tuple[float, float]:
    """(tasks/s, tasks per CPU-second) of the bare loop."""
    with private_server([]) as server:
        port = int(server.url.rsplit(":", 1)[1].split("/")[0])
        if design == "group":
            _Conn(port).call(command("XGROUP", "CREATE", STREAM, GROUP, "$", "MKSTREAM"), 1)
        ctx = mp.get_context("spawn")
        out, ready, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        when = ctx.Value("d", 0.0)
        sync = (ready, go, when, seconds)
        procs = [ctx.Process(target=_producer, args=(design, port, rate, sync, out))
                 for _ in range(PRODUCERS)]
        procs += [ctx.Process(target=_worker, args=(design, port, f"c{i}", sync, out))
                  for i in range(WORKERS)]
        for p in procs:
            p.start()
        for _ in procs:  # spawning takes a while on a busy machine: start once all are up
            ready.get(timeout=60)
        start = when.value = time.time() + SETTLE_S
        end = start + seconds
        go.set()
        redis_proc = psutil.Process(server.pid)
        time.sleep(max(0.0, start - time.time()))
        r0 = sum(redis_proc.cpu_times()[:2])
        time.sleep(max(0.0, end - time.time()))
        r1 = sum(redis_proc.cpu_times()[:2])
        got = [out.get(timeout=30) for _ in procs]
        for p in procs:
            p.join()
    done = sum(n for _, _, n in got)
    cpu = sum(c for _, c, _ in got) + (r1 - r0)
    return done / seconds, done / cpu


def run_msgbench(design: str, rate: float, seconds: float) -> tuple[float, float]:
    """(tasks/s, tasks per CPU-second) of ``msgbench run`` for the design."""
    per_pub = rate
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run(
            [sys.executable, "-m", "msgbench", "run", *DESIGNS[design], "--pattern", "tasks",
             "--pubs", str(PRODUCERS), "--subs", str(WORKERS), "--rate", f"{per_pub:g}",
             "--duration", f"{seconds:g}s", "--warmup", "1s", "--json", "--quiet", "--out",
             out], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"msgbench run failed: {proc.stderr.strip()[-300:]}")
    s = json.loads(proc.stdout)["summary"]
    return float(s["deliveries_per_s"]), float(s["msgs_per_cpu_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--duration", default="3s")
    ap.add_argument("--rate", default="5k", help="tasks/s per producer (both sides)")
    ap.add_argument("--designs", default=",".join(DESIGNS))
    args = ap.parse_args()
    rate, seconds = _parse_rate(args.rate), _parse_s(args.duration)
    designs = args.designs.split(",")
    figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for trial in range(args.trials):
        for d in designs:
            for side, fn in (("bare", bare), ("msgbench", run_msgbench)):
                tps, per_cpu = fn(d, rate, seconds)
                figures.setdefault((d, side), []).append((tps, per_cpu))
                print(f"trial {trial + 1} {d:7s} {side:8s} {tps:10,.0f} tasks/s "
                      f"{per_cpu:10,.0f} tasks/CPU-s", flush=True)
    print(f"\nmedians, {PRODUCERS} producers x {rate:g}/s -> {WORKERS} workers, 64 B, "
          f"zero work, {args.trials} trials of {seconds:g} s")
    for d in designs:
        b = [statistics.median(x) for x in zip(*figures[(d, "bare")], strict=True)]
        m = [statistics.median(x) for x in zip(*figures[(d, "msgbench")], strict=True)]
        ratio = m[1] / max(b[1], 1e-9)
        print(f"{d:7s} bare {b[0]:9,.0f} tasks/s {b[1]:9,.0f}/CPU-s | msgbench {m[0]:9,.0f} "
              f"tasks/s {m[1]:9,.0f}/CPU-s | per-CPU ratio msgbench/bare {ratio:.2f}")


if __name__ == "__main__":
    main()

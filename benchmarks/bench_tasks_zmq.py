"""Speed check of the ZeroMQ task modes: tasks/s and tasks per CPU-second at zero work.

2 producers x 4 workers, 64 B, closed loop (``--rate max``, no warm-up), for
``--zmq-mode pipeline`` and ``--zmq-mode broker`` (``--zmq-credit 1`` and 16), each
next to a bare pyzmq loop of the same design measured in the same trial:

* **bare PUSH/PULL**: 2 producer processes each bind a PUSH and send in a blocking
  loop; 4 worker processes each connect a PULL to both and only count;
* **bare ROUTER broker**: 2 producer DEALERs -> a ROUTER/ROUTER broker process (the
  zguide's load balancer: a task goes to a worker that sent READY) -> 4 worker DEALERs
  that count each task and send READY again; a worker starts with as many READYs as
  the case's ``--zmq-credit`` (1, or 16), so it holds that many tasks at most.

Tasks/s is what the workers took during the window (msgbench: delivered inside the
measured window over its length). Tasks per CPU-second divides that by the CPU time of
every process of the design over the window (msgbench: its ``msgs_per_cpu_s``, which
counts the coordinator, workers and broker; the bare loops: producers, workers, broker).
Medians of ``--trials``; ratios are msgbench / bare. The 2-core machine is shared:
compare figures measured in one go only.

Then (unless ``--skip-work``) the same 2 x 4 at ``--work fixed:1ms``, 2 x 500 tasks/s
(a third of what the group can do), with and without one worker ten times slower
(``--slow-worker 0:x10``): per-worker shares, Jain's index, max/min share, utilisation
(busy / available worker time) and completion latency, pipeline next to broker.

    python3 benchmarks/bench_tasks_zmq.py [--trials 3] [--duration 3] [--skip-work]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import zmq

from msgbench.kit.procs import LOOPBACK, free_port

PUBS, SUBS, SIZE = 2, 4, 64
SETTLE_S = 0.5
"""Time for every connection to come up before the counted window starts."""
RUN_TIMEOUT_S = 300
GUARD_MS = 10_000
"""Receive timeout of the bare loops: they fail rather than hang."""
SEND_GUARD_MS = 2000
"""A bare producer whose workers are gone stops after this long blocked."""
READY = b"R"
TASK = bytes(SIZE)


def _cpu() -> float:
    return time.process_time()  # this process, every thread (ZeroMQ's I/O thread too)


def _report(count: int, cpu: float, window: float) -> None:
    print(json.dumps({"count": count, "cpu": cpu, "window": window}), flush=True)


def _producer(kind: str, addr: str, seconds: float) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH if kind == "push" else zmq.DEALER)
    sock.setsockopt(zmq.SNDTIMEO, SEND_GUARD_MS)
    if kind == "push":
        sock.bind(addr)
    else:
        sock.connect(addr)
    frame = (b"\x02t0" + TASK) if kind == "dealer" else TASK
    send = sock.send
    time.sleep(SETTLE_S)
    t0, c0 = time.perf_counter(), _cpu()
    end = t0 + seconds + SETTLE_S  # outlast the workers' window
    sent = 0
    try:
        while time.perf_counter() < end:
            for _ in range(100):
                send(frame)
            sent += 100
    except zmq.Again:
        pass  # the workers are gone: stop
    _report(sent, _cpu() - c0, time.perf_counter() - t0)
    sock.close(linger=0)
    ctx.term()


def _worker(kind: str, addrs: Sequence[str], credit: int, seconds: float) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL if kind == "pull" else zmq.DEALER)
    sock.setsockopt(zmq.RCVTIMEO, GUARD_MS)
    for a in addrs:
        sock.connect(a)
    recv, send = sock.recv, sock.send
    if kind == "dealer":
        for _ in range(credit):  # the broker lists this worker once per READY
            send(READY)
    recv()
    if kind == "dealer":
        send(READY)
    count, t0, c0 = 0, time.perf_counter(), _cpu()
    end = t0 + seconds
    while time.perf_counter() < end:
        recv()
        count += 1
        if kind == "dealer":
            send(READY)
    _report(count, _cpu() - c0, time.perf_counter() - t0)
    sock.close(linger=0)
    ctx.term()


def _broker(front_addr: str, back_addr: str, seconds: float) -> None:
    """The zguide's load balancer, one-way: read producers only while a worker is ready."""
    ctx = zmq.Context()
    front, back = ctx.socket(zmq.ROUTER), ctx.socket(zmq.ROUTER)
    front.bind(front_addr)
    back.bind(back_addr)
    ready: deque[bytes] = deque()
    both, back_only = zmq.Poller(), zmq.Poller()
    both.register(front, zmq.POLLIN)
    both.register(back, zmq.POLLIN)
    back_only.register(back, zmq.POLLIN)
    forwarded, c0, t0 = 0, _cpu(), time.perf_counter()
    end = t0 + seconds + 3 * SETTLE_S
    while time.perf_counter() < end:
        events = dict((both if ready else back_only).poll(100))
        if back in events:
            ready.append(back.recv_multipart()[0])
        if front in events and ready:
            back.send_multipart([ready.popleft(), front.recv_multipart()[-1][3:]])
            forwarded += 1
    _report(forwarded, _cpu() - c0, time.perf_counter() - t0)
    ctx.destroy(linger=0)


def _bare(design: str, credit: int, seconds: float) -> tuple[float, float]:
    """(tasks/s, tasks per CPU-second) of one bare run of ``design`` (push or broker)."""
    me = [sys.executable, __file__, "--role"]
    procs: list[tuple[str, subprocess.Popen[str]]] = []

    def start(role: str, *args: str) -> None:
        procs.append((role, subprocess.Popen([*me, role, *args, str(seconds)],
                                             stdout=subprocess.PIPE, text=True)))

    if design == "push":
        pushes = [f"tcp://{LOOPBACK}:{free_port()}" for _ in range(PUBS)]
        for a in pushes:
            start("producer", "push", a)
        for _ in range(SUBS):
            start("worker", "pull", ",".join(pushes), "1")
    else:
        front, back = (f"tcp://{LOOPBACK}:{free_port()}" for _ in range(2))
        start("broker", front, back)
        for _ in range(PUBS):
            start("producer", "dealer", front)
        for _ in range(SUBS):
            start("worker", "dealer", back, str(credit))
    done, cpu_per_s = 0, 0.0
    for role, p in procs:
        out, _ = p.communicate(timeout=RUN_TIMEOUT_S)
        if p.returncode != 0:
            raise SystemExit(f"bare {design} {role} failed")
        r = json.loads(out)
        cpu_per_s += r["cpu"] / r["window"]  # CPU share over its active time
        if role == "worker":
            done += r["count"]
    rate = done / seconds
    return rate, rate / cpu_per_s


def _msgbench(args: Sequence[str], seconds: float) -> tuple[float, float, dict[str, Any]]:
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run(
            [sys.executable, "-m", "msgbench", "run", "--target", "zmq", "--pattern", "tasks",
             "--pubs", str(PUBS), "--subs", str(SUBS), "--size", str(SIZE), "--rate", "max",
             "--duration", f"{seconds}s", "--warmup", "0s", "--drain-timeout", "2s",
             "--zmq-sockbuf", "65536", *args, "--json", "--quiet", "--out", out],
            capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"msgbench run {' '.join(args)} failed: {proc.stderr.strip()}")
    doc: dict[str, Any] = json.loads(proc.stdout)
    s = doc["summary"]
    if s["duplicated"] or s["lost"]:
        raise SystemExit(f"msgbench {' '.join(args)}: lost {s['lost']}, "
                         f"duplicated {s['duplicated']}: the ledger must be exact")
    return float(s["deliveries_per_s"]), float(s["msgs_per_cpu_s"] or 0.0), doc


def _with_work(seconds: float) -> None:
    print(f"\n{PUBS} x {SUBS}, --work fixed:1ms, 2 x 500 tasks/s, {seconds:g} s")
    for slow in ([], ["--slow-worker", "0:x10"]):
        for mode in ("pipeline", "broker"):
            _, _, doc = _msgbench(["--zmq-mode", mode, "--rate", "500", "--work", "fixed:1ms",
                                   *slow, "--warmup", "500ms", "--drain-timeout", "3s"],
                                  seconds)
            g, lat = doc["groups"]["g0"], doc["summary"]["latency_ns"]
            util = " ".join(f"{u:.2f}" for u in g["utilisation"])
            print(f"  {mode:8} {' '.join(slow) or 'even workers':22} shares {g['shares']}  "
                  f"jain {g['jain']:.3f}  max/min {g['max_min']:.2f}  utilisation {util}  "
                  f"completion p50 {lat['p50'] / 1e6:.2f} ms p99 {lat['p99'] / 1e6:.1f} ms",
                  flush=True)


def main() -> None:
    """Run the benchmark (or, with ``--role``, one process of a bare loop)."""
    if len(sys.argv) > 1 and sys.argv[1] == "--role":
        role, *rest = sys.argv[2:]
        seconds = float(rest[-1])
        if role == "producer":
            _producer(rest[0], rest[1], seconds)
        elif role == "worker":
            _worker(rest[0], rest[1].split(","), int(rest[2]), seconds)
        else:
            _broker(rest[0], rest[1], seconds)
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per trial")
    ap.add_argument("--skip-work", action="store_true", help="only the zero-work part")
    args = ap.parse_args()
    print(f"libzmq {zmq.zmq_version()}, pyzmq {zmq.__version__}; {PUBS} producers x {SUBS} "
          f"workers, {SIZE} B, zero work, closed loop, {args.duration:g} s per trial")
    cases = [("pipeline", "push", 1, ["--zmq-mode", "pipeline"]),
             ("broker credit 1", "broker", 1, ["--zmq-mode", "broker"]),
             ("broker credit 16", "broker", 16, ["--zmq-mode", "broker", "--zmq-credit", "16"])]
    rows: dict[str, list[tuple[float, float]]] = {}
    for i in range(args.trials):
        for name, bare, credit, flags in cases:
            ref = _bare(bare, credit, args.duration)
            got = _msgbench(flags, args.duration)
            rows.setdefault(f"bare {name}", []).append(ref)
            rows.setdefault(name, []).append(got[:2])
            print(f"trial {i + 1} {name:17} msgbench {got[0]:9,.0f} tasks/s "
                  f"{got[1]:9,.0f} /CPU-s   bare {bare:6} {ref[0]:9,.0f} tasks/s "
                  f"{ref[1]:9,.0f} /CPU-s", flush=True)
    med = {k: (statistics.median(a for a, _ in v), statistics.median(b for _, b in v))
           for k, v in rows.items()}
    print("\nmedians (msgbench / bare of the same design):")
    for name, bare, _, _ in cases:
        m, r = med[name], med[f"bare {name}"]
        print(f"  {name:17} {m[0]:9,.0f} tasks/s ({m[0] / r[0]:.2f} x bare)   "
              f"{m[1]:9,.0f} tasks/CPU-s ({m[1] / r[1]:.2f} x)   bare {bare}: "
              f"{r[0]:9,.0f} tasks/s {r[1]:9,.0f} tasks/CPU-s")
    if not args.skip_work:
        _with_work(args.duration)


if __name__ == "__main__":
    main()

"""Speed check of the ZeroMQ target.

1. ``1 -> 1, 64 B, --rate max`` on the mesh, every latency recorded, next to
   a reference measured in the same run: a bare pyzmq PUB -> SUB pair of
   processes (blocking send loop, blocking receive loop that only counts, the
   same one-frame topic framing), no msgbench; its figure is what its
   subscriber received. Two pairs: PUB drops at the high-water mark like
   msgbench's default publisher; XPUB with ``ZMQ_XPUB_NODROP`` waits there
   like ``--zmq-nodrop``. Each msgbench variant is compared with its own.
   With a C compiler and libzmq's headers, a third pair runs the same loops
   in C (``zmq_ref.c``): what libzmq itself does here, without Python. Done
   at ZeroMQ's default high-water mark (1000) and at 100000 (``--hwm``).
2. Mesh and forwarder, ``4 -> 32``, 64 B and 1 KiB: closed loop with
   ``--zmq-nodrop`` finds the sustainable maximum (see :func:`_sustained`;
   CPU of each part); closed loop with the default PUB shows what dropping
   costs; then an open-loop run at half the sustainable per-publisher rate
   gives p99 latency at 50 % load.

Closed-loop runs have no warm-up: ZeroMQ's queues and the kernel's socket
buffers (autotuned, megabytes per connection on loopback) fill with warm-up
messages that the measured ones would then wait behind for seconds, hiding the
throughput. Medians of ``--trials`` runs (part 1); one run per cell in part 2.
The 2-core machine is shared and noisy: compare figures measured in one go.

    python3 benchmarks/bench_zmq.py [--trials 3] [--duration 3s] [--hwm 1000,100000]
                                    [--skip-fanout] [--skip-one]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import zmq

from msgbench.kit.procs import LOOPBACK, free_port
from msgbench.run.plan import plan_workers
from msgbench.targets.zmq.proxy import DEFAULT_HWM
from msgbench.workload.config import RunConfig

PREFIX = b"\x02t0"
REF_SETTLE_S = 0.5
REF_BATCH = 1000
RUN_TIMEOUT_S = 300
REF_RECV_TIMEOUT_MS = 10_000
HIGH_HWM = 100_000
"""A high-water mark that lets the kernel's socket buffers, not ZeroMQ's queue limit, set the
pace: at ZeroMQ's default of 1000, PUB drops (or a NODROP publisher stalls) long before the
subscriber is saturated, even in C."""


def _ref_pub(addr: str, seconds: float, nodrop: bool, hwm: int) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.XPUB if nodrop else zmq.PUB)
    sock.setsockopt(zmq.SNDHWM, hwm)
    if nodrop:  # a blocking send then waits at the high-water mark instead of dropping
        sock.setsockopt(zmq.XPUB_NODROP, 1)
    sock.bind(addr)
    msg = PREFIX + bytes(64)
    send = sock.send
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(REF_BATCH):
            send(msg)
    sock.close(linger=0)
    ctx.term()


def _ref_sub(addr: str, seconds: float, hwm: int) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.setsockopt(zmq.SUBSCRIBE, PREFIX)
    sock.setsockopt(zmq.RCVTIMEO, REF_RECV_TIMEOUT_MS)  # fail, never hang
    sock.connect(addr)
    recv = sock.recv
    recv()  # the subscription has propagated
    count = 0
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        for _ in range(REF_BATCH):
            recv()
        count += REF_BATCH
    print(count / (time.perf_counter() - start), flush=True)
    sock.close(linger=0)
    ctx.term()


def _reference(seconds: float, hwm: int, nodrop: bool = False,
               c_ref: Path | None = None) -> float:
    """Messages/s a bare blocking SUB receives from a bare blocking PUB (two processes):
    pyzmq, or with ``c_ref`` the same loops in C against libzmq (no Python at all)."""
    addr = f"tcp://{LOOPBACK}:{free_port()}"
    me = [str(c_ref)] if c_ref else [sys.executable, __file__, "--ref-role"]
    pub_role = "pub-nodrop" if nodrop else "pub"
    sub = subprocess.Popen([*me, "sub", addr, str(seconds), str(hwm)], stdout=subprocess.PIPE,
                           text=True)
    pub = subprocess.Popen([*me, pub_role, addr, str(seconds + 2 * REF_SETTLE_S), str(hwm)])
    out, _ = sub.communicate(timeout=RUN_TIMEOUT_S)
    pub.wait(RUN_TIMEOUT_S)
    if sub.returncode != 0:
        raise SystemExit(f"reference subscriber failed ({' '.join(me)})")
    return float(out.strip())


def _build_c_reference(workdir: Path) -> Path | None:
    """Compile ``zmq_ref.c`` (the reference loops in C) if a compiler and libzmq's headers
    are here; None (and why) otherwise."""
    exe = workdir / "zmq_ref"
    cc = shutil.which("cc") or shutil.which("gcc")
    proc = None if cc is None else subprocess.run(
        [cc, "-O2", "-o", str(exe), str(Path(__file__).with_name("zmq_ref.c")), "-lzmq"],
        capture_output=True, text=True, check=False)
    if proc is None or proc.returncode != 0:
        print("C reference skipped: needs a C compiler and libzmq's headers "
              "(apt install libzmq3-dev)")
        return None
    return exe


def _msgbench(args: Sequence[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run(
            [sys.executable, "-m", "msgbench", "run", "--target", "zmq", *args,
             "--json", "--quiet", "--out", out],
            capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False,
        )
    if proc.returncode != 0:
        raise SystemExit(f"msgbench run {' '.join(args)} failed: {proc.stderr.strip()}")
    doc: dict[str, Any] = json.loads(proc.stdout)
    s = doc["summary"]
    assert s["latency_ns"]["count"] == s["delivered"], "every delivery must be recorded"
    return doc


def _cpu_by_part(doc: dict[str, Any], pubs: int, subs: int) -> str:
    """CPU seconds of the measured window per part: publishers, subscribers, forwarder."""
    plans = plan_workers(RunConfig(target="zmq", pubs=pubs, subs=subs), colocated=False)
    parts: dict[str, float] = {}
    for p in doc["processes"]:
        role = p["role"]
        if role.startswith("worker "):
            plan = plans[int(role.split()[1])]
            role = "pub workers" if plan.pubs else "sub workers"
        parts[role] = parts.get(role, 0.0) + p["cpu_s"]
    return ", ".join(f"{k} {v:.2f}" for k, v in parts.items())


def _line(label: str, doc: dict[str, Any], pubs: int, subs: int) -> str:
    s = doc["summary"]
    lost = 100.0 * s["lost"] / s["expected"] if s["expected"] else 0.0
    return (f"  {label:36} {s['deliveries_per_s'] / 1e6:6.3f} M/s  lost {lost:5.1f} %  "
            f"p99 {s['latency_ns']['p99'] / 1e6:8.2f} ms  {doc['status']:8}  "
            f"CPU s: {_cpu_by_part(doc, pubs, subs)}")


def _sustained(doc: dict[str, Any], seconds: float) -> float:
    """Deliveries/s the subscribers of a ``--zmq-nodrop`` closed loop sustained.

    With no warm-up the subscribers are busy from the start of the window until the last
    delivery, which comes at most ``max latency`` after the window ends: they took that long
    for everything delivered. Counting only deliveries inside the window would not do:
    ZeroMQ's queues and the kernel's socket buffers hold seconds of backlog, and counting
    what the publishers sent would count that backlog as throughput.
    """
    s = doc["summary"]
    return float(s["delivered"]) / (seconds + float(s["latency_ns"]["max"]) / 1e9)


def _one_to_one(trials: int, duration: str, seconds: float, hwm: int,
                c_ref: Path | None) -> None:
    print(f"\n1 -> 1, 64 B, --hwm {hwm} (SNDHWM / RCVHWM on both sides of every pair)")
    common = ["--pubs", "1", "--subs", "1", "--size", "64", "--rate", "max",
              "--duration", duration, "--warmup", "0s", "--hwm", str(hwm)]
    rows: dict[str, list[float]] = {k: [] for k in ("ref", "ref_nodrop", "c", "drop", "nodrop")}
    for i in range(trials):
        rows["ref"].append(_reference(seconds, hwm))
        rows["ref_nodrop"].append(_reference(seconds, hwm, nodrop=True))
        if c_ref is not None:
            rows["c"].append(_reference(seconds, hwm, c_ref=c_ref))
        d = _msgbench(common)
        n = _msgbench([*common, "--zmq-nodrop"])
        rows["drop"].append(d["summary"]["deliveries_per_s"])
        rows["nodrop"].append(n["summary"]["deliveries_per_s"])
        c_text = f" / C {rows['c'][-1] / 1e6:.3f}" if c_ref is not None else ""
        print(f"trial {i + 1}: reference {rows['ref'][-1] / 1e6:.3f} / nodrop "
              f"{rows['ref_nodrop'][-1] / 1e6:.3f}{c_text} M/s   msgbench "
              f"{rows['drop'][-1] / 1e6:.3f} M/s (lost {d['summary']['lost']:,})   "
              f"--zmq-nodrop {rows['nodrop'][-1] / 1e6:.3f} M/s (lost {n['summary']['lost']:,})",
              flush=True)
    med = {k: statistics.median(v) for k, v in rows.items() if v}
    r, rn, o, w = med["ref"], med["ref_nodrop"], med["drop"], med["nodrop"]
    if "c" in med:
        print(f"median reference, libzmq in C, PUB -> SUB:             {med['c'] / 1e6:.3f} "
              "M msgs/s")
    print(f"median reference, bare pyzmq PUB -> SUB (2 processes):  {r / 1e6:.3f} M msgs/s")
    print(f"median reference, bare XPUB_NODROP -> SUB:             {rn / 1e6:.3f} M msgs/s")
    print(f"median msgbench zmq mesh 1->1, all recorded:           {o / 1e6:.3f} M deliveries/s"
          f"  ratio {o / r:.2f} (vs PUB)")
    print(f"median msgbench zmq mesh 1->1 --zmq-nodrop:            {w / 1e6:.3f} M deliveries/s"
          f"  ratio {w / rn:.2f} (vs XPUB_NODROP)")


def _fanout(duration: str, seconds: float) -> None:
    pubs, subs = 4, 32
    print(f"\n{pubs} -> {subs}, {duration} each: closed loop (no warm-up), then open loop at "
          "half the sustainable rate")
    print("  (M/s: deliveries inside the measured window; lost: never arrived, drain 5 s)")
    for mode in ("mesh", "proxy"):
        for size in (64, 1024):
            base = ["--zmq-mode", mode, "--pubs", str(pubs), "--subs", str(subs),
                    "--size", str(size), "--duration", duration, "--drain-timeout", "5s"]
            print(f"{mode}, {size} B:", flush=True)
            sustained = _msgbench([*base, "--rate", "max", "--warmup", "0s", "--zmq-nodrop"])
            rate = _sustained(sustained, seconds)
            print(_line("max, --zmq-nodrop", sustained, pubs, subs), flush=True)
            print(f"  {'  sustained (delivered / time taken)':36} {rate / 1e6:6.3f} M/s",
                  flush=True)
            dropping = _msgbench([*base, "--rate", "max", "--warmup", "0s"])
            print(_line("max, PUB drops", dropping, pubs, subs), flush=True)
            half = max(1, int(rate / subs / pubs / 2))  # one topic: every message to all subs
            at_half = _msgbench([*base, "--rate", str(half), "--warmup", "1s"])
            print(_line(f"--rate {half}/s per pub (50 %)", at_half, pubs, subs), flush=True)


def main() -> None:
    """Run the benchmark (or, with ``--ref-role``, one side of the reference)."""
    if len(sys.argv) > 1 and sys.argv[1] == "--ref-role":
        role, addr, secs, hwm = sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
        if role.startswith("pub"):
            time.sleep(REF_SETTLE_S)
            _ref_pub(addr, secs, role == "pub-nodrop", hwm)
        else:
            _ref_sub(addr, secs, hwm)
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--duration", default="3s")
    ap.add_argument("--skip-fanout", action="store_true", help="only the 1 -> 1 part")
    ap.add_argument("--skip-one", action="store_true", help="only the 4 -> 32 part")
    ap.add_argument("--hwm", default=f"{DEFAULT_HWM},{HIGH_HWM}",
                    help="comma-separated high-water marks for the 1 -> 1 part "
                         f"[{DEFAULT_HWM} (ZeroMQ's default),{HIGH_HWM}]")
    args = ap.parse_args()
    seconds = float(args.duration.rstrip("s"))
    print(f"libzmq {zmq.zmq_version()}, pyzmq {zmq.__version__}")
    if not args.skip_one:
        with tempfile.TemporaryDirectory() as work:
            c_ref = _build_c_reference(Path(work))
            for hwm in args.hwm.split(","):
                _one_to_one(args.trials, args.duration, seconds, int(hwm), c_ref)
    if not args.skip_fanout:
        _fanout(args.duration, seconds)


if __name__ == "__main__":
    main()

"""Speed check of the ZeroMQ request/reply modes (``--pattern rpc``).

1. **1 x 1, one call in flight**: one requester, one responder, 64 B, closed loop
   (``--inflight 1``), round trip p50 / p99 for ``--zmq-mode reqrep``,
   ``dealer`` and ``rpc-broker``, each next to a bare pyzmq loop of the same design
   measured in the same trial (two processes, blocking calls, every round trip timed,
   no msgbench):

   * bare REQ -> REP (REP echoes);
   * bare DEALER -> ROUTER (ROUTER echoes on the routing id);
   * bare DEALER -> broker -> DEALER (the same broker program msgbench starts,
     :mod:`msgbench.targets.zmq.rpcbroker`; the responder echoes ``[id, payload]``);

   and, with a C compiler and libzmq's headers, libzmq's lockstep REQ -> REP loop in C
   (``zmq_rr_ref.c``): what libzmq itself costs, without Python. Medians of
   ``--trials``; ratios are msgbench / bare pyzmq of the same design.
2. **8 requesters x 2 responders, open loop** (unless ``--skip-search``): per design, a
   short search for the highest ``--rate`` per requester whose round trip p99 (from
   the intended send time) is <= 10 ms with no timeouts: from ``--start``, halving
   until each design passed once, then doubling each until it fails, then ``--bisect``
   halvings between its highest pass and lowest fail; the designs take turns at each
   rate; one run of ``--step`` seconds each, and each
   step prints the run's first named limit (on a shared machine: often waiting for a
   CPU, and then the steps are not monotonic).

The 2-core machine is shared and noisy: compare figures measured in one go only.

    python3 benchmarks/bench_rpc_zmq.py [--trials 3] [--duration 3] [--skip-search]
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

import numpy as np
import zmq

from msgbench.kit.procs import LOOPBACK, free_port

SIZE = 64
RUN_TIMEOUT_S = 300
REF_RECV_TIMEOUT_MS = 5000
"""A bare loop that hears nothing this long fails (never hangs)."""
REF_SETTLE_S = 0.3
"""Time the bare responder (and broker) get to bind before the requester starts."""
P99_GOAL_NS = 10_000_000
MODES = ("reqrep", "dealer", "rpc-broker")
MIN_RATE = 10
"""Below this many requests/s per requester the search stops halving."""
BROKER = "msgbench.targets.zmq.rpcbroker"


# -- bare pyzmq loops (run as ``--ref-role ROLE ADDRESS SECONDS``) ---------------------------


def _ref_responder(role: str, addr: str) -> None:
    """Echo every request until idle for REF_RECV_TIMEOUT_MS (or killed)."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    kind = {"rep": zmq.REP, "router": zmq.ROUTER, "backend": zmq.DEALER}[role]
    s = ctx.socket(kind)
    s.setsockopt(zmq.RCVTIMEO, REF_RECV_TIMEOUT_MS)
    if role == "backend":
        s.connect(addr)  # behind the broker
    else:
        s.bind(addr)
    try:
        if role == "rep":
            while True:
                s.send(s.recv())
        else:
            while True:
                s.send_multipart(s.recv_multipart())  # [routing id, payload] back
    except zmq.Again:
        pass
    s.close(linger=0)
    ctx.term()


def _ref_requester(role: str, addr: str, seconds: float) -> None:
    """One request in flight for ``seconds``; prints count, p50 and p99 in ns (JSON)."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    s = ctx.socket(zmq.REQ if role == "req" else zmq.DEALER)
    s.setsockopt(zmq.RCVTIMEO, REF_RECV_TIMEOUT_MS)
    s.connect(addr)
    payload = b"\x01" * SIZE
    rtts: list[int] = []
    clock = time.monotonic_ns
    end = clock() + int(seconds * 1e9)
    while True:
        t0 = clock()
        if t0 >= end:
            break
        s.send(payload)
        s.recv()
        rtts.append(clock() - t0)
    a = np.array(rtts)
    print(json.dumps({"count": len(a), "p50": float(np.percentile(a, 50)),
                      "p99": float(np.percentile(a, 99))}))
    s.close(linger=0)
    ctx.term()


def _pair(responder: list[str], requester: list[str], broker: list[str] | None = None
          ) -> dict[str, float]:
    """Run a bare responder (and broker) and requester as processes; the requester's figures."""
    servers = []
    try:
        if broker is not None:
            servers.append(subprocess.Popen(broker, stdout=subprocess.DEVNULL))
        servers.append(subprocess.Popen(responder))
        time.sleep(REF_SETTLE_S)
        out = subprocess.run(requester, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                             check=False)
        if out.returncode != 0:
            raise SystemExit(f"bare requester failed: {out.stderr.strip()}")
    finally:
        for p in servers:
            p.terminate()
            p.wait(RUN_TIMEOUT_S)
    if requester[0] != sys.executable:  # the C loop prints "count p50 p99"
        n, p50, p99 = out.stdout.split()
        return {"count": float(n), "p50": float(p50), "p99": float(p99)}
    figures: dict[str, float] = json.loads(out.stdout)
    return figures


def _bare(mode: str, seconds: float) -> dict[str, float]:
    me = [sys.executable, __file__, "--ref-role"]
    a = f"tcp://{LOOPBACK}:{free_port()}"
    if mode == "reqrep":
        return _pair([*me, "rep", a], [*me, "req", a, str(seconds)])
    if mode == "dealer":
        return _pair([*me, "router", a], [*me, "dealer", a, str(seconds)])
    back = f"tcp://{LOOPBACK}:{free_port()}"
    return _pair([*me, "backend", back], [*me, "dealer", a, str(seconds)],
                 broker=[sys.executable, "-m", BROKER, "--pair", f"{a},{back}"])


def _c_ref(exe: Path, seconds: float) -> dict[str, float]:
    a = f"tcp://{LOOPBACK}:{free_port()}"
    return _pair([str(exe), "rep", a, str(seconds)], [str(exe), "req", a, str(seconds),
                                                       str(SIZE)])


def _build_c_reference(workdir: Path) -> Path | None:
    """Compile ``zmq_rr_ref.c`` if a compiler and libzmq's headers are here; None (and
    why) otherwise."""
    exe = workdir / "zmq_rr_ref"
    cc = shutil.which("cc") or shutil.which("gcc")
    proc = None if cc is None else subprocess.run(
        [cc, "-O2", "-o", str(exe), str(Path(__file__).with_name("zmq_rr_ref.c")), "-lzmq"],
        capture_output=True, text=True, check=False)
    if proc is None or proc.returncode != 0:
        print("C reference skipped: needs a C compiler and libzmq's headers "
              "(apt install libzmq3-dev)")
        return None
    return exe


# -- msgbench --------------------------------------------------------------------------------


def _msgbench(args: Sequence[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run(
            [sys.executable, "-m", "msgbench", "run", "--target", "zmq", "--pattern", "rpc",
             "--size", str(SIZE), *args, "--json", "--quiet", "--out", out],
            capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False,
        )
    if proc.returncode not in (0, 1):
        raise SystemExit(f"msgbench run {' '.join(args)} failed: {proc.stderr.strip()}")
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def _one_by_one(trials: int, seconds: float, c_exe: Path | None) -> None:
    rows: dict[str, list[tuple[float, float]]] = {}
    for trial in range(trials):
        for mode in MODES:
            doc = _msgbench(["--zmq-mode", mode, "--pubs", "1", "--subs", "1", "--inflight",
                             "1", "-d", f"{seconds}s", "-w", "500ms"])
            s = doc["summary"]
            if doc["status"] != "ok" or s["timeouts"]:
                raise SystemExit(f"{mode} 1 x 1 trial {trial}: {doc['status']} "
                                 f"{doc['reasons']}")
            rows.setdefault(mode, []).append((s["latency_ns"]["p50"], s["latency_ns"]["p99"]))
            b = _bare(mode, seconds)
            rows.setdefault(f"bare {mode}", []).append((b["p50"], b["p99"]))
            print(f"  trial {trial}: {mode:10} msgbench p50 {s['latency_ns']['p50'] / 1e3:7.1f}"
                  f" us p99 {s['latency_ns']['p99'] / 1e3:8.1f} us ({s['delivered']} calls) | "
                  f"bare pyzmq p50 {b['p50'] / 1e3:7.1f} us p99 {b['p99'] / 1e3:8.1f} us "
                  f"({b['count']:.0f} calls)", flush=True)
        if c_exe is not None:
            c = _c_ref(c_exe, seconds)
            rows.setdefault("C", []).append((c["p50"], c["p99"]))
            print(f"  trial {trial}: libzmq C REQ/REP p50 {c['p50'] / 1e3:7.1f} us "
                  f"p99 {c['p99'] / 1e3:8.1f} us ({c['count']:.0f} calls)", flush=True)

    def med(key: str, i: int) -> float:
        return statistics.median(r[i] for r in rows[key])

    print(f"medians of {trials} trials, 1 x 1, --inflight 1, {SIZE} B, round trip:")
    for mode in MODES:
        m50, m99, b50, b99 = med(mode, 0), med(mode, 1), med(f"bare {mode}", 0), \
            med(f"bare {mode}", 1)
        print(f"  {mode:10} msgbench p50 {m50 / 1e3:7.1f} us  p99 {m99 / 1e3:8.1f} us | "
              f"bare pyzmq p50 {b50 / 1e3:7.1f} us  p99 {b99 / 1e3:8.1f} us | "
              f"ratio p50 {m50 / b50:4.2f}  p99 {m99 / b99:4.2f}")
    if "C" in rows:
        print(f"  libzmq C REQ/REP      p50 {med('C', 0) / 1e3:7.1f} us  "
              f"p99 {med('C', 1) / 1e3:8.1f} us")


def _passes(mode: str, rate: int, step_s: float) -> bool:
    """One search step: run 8 x 2 at ``rate`` per requester, print it, say if it passed."""
    doc = _msgbench(["--zmq-mode", mode, "--pubs", "8", "--subs", "2", "--rate", str(rate),
                     "-d", f"{step_s}s", "-w", "500ms"])
    s = doc["summary"]
    p99 = s["latency_ns"].get("p99") or 0
    ok = (doc["status"] == "ok" and s["timeouts"] == 0 and p99 <= P99_GOAL_NS
          and s["expected"] > 0)
    first_limit = (doc.get("limits") or ["none named"])[0]
    print(f"  {mode:10} --rate {rate:6} x 8: {'pass' if ok else 'FAIL'}  p99 "
          f"{p99 / 1e6:7.2f} ms, timeouts {s['timeouts']}, {s['delivered']}/{s['expected']} "
          f"replies, {doc['status']}; first limit: {first_limit[:90]}", flush=True)
    return ok


def _search(start: int, step_s: float, bisect: int) -> None:
    """Per design, the highest passing rate (see the module docstring). The designs take
    turns at each rate, so a busy spell of the shared machine hits all of them alike."""
    print(f"8 requesters x 2 responders, open loop, {SIZE} B: highest --rate per requester "
          f"with p99 <= {P99_GOAL_NS / 1e6:g} ms and no timeouts ({step_s:g} s per step)")
    good = dict.fromkeys(MODES, 0)
    bad = dict.fromkeys(MODES, 0)
    rate = start
    # down: halve until every design passed once (or the rate is too low to matter)
    while True:
        for mode in MODES:
            if not good[mode]:
                if _passes(mode, rate, step_s):
                    good[mode] = rate
                else:
                    bad[mode] = rate
        if all(good.values()) or rate // 2 < MIN_RATE:
            break
        rate //= 2
    # up: double from each design's pass until it fails
    rate = max(good.values())
    while True:
        up = [m for m in MODES if good[m] and not (bad[m] and bad[m] <= rate * 2)]
        if not up:
            break
        rate *= 2
        for mode in up:
            if good[mode] < rate:
                if _passes(mode, rate, step_s):
                    good[mode] = rate
                else:
                    bad[mode] = rate
    for _ in range(bisect):
        for mode in MODES:
            if good[mode] and bad[mode] > good[mode]:
                mid = (good[mode] + bad[mode]) // 2
                if mid not in (good[mode], bad[mode]):
                    if _passes(mode, mid, step_s):
                        good[mode] = mid
                    else:
                        bad[mode] = mid
    for mode in MODES:
        print(f"  {mode:10} highest passing: {good[mode]} per requester = {good[mode] * 8} "
              f"requests/s (lowest failing above it: {bad[mode] or 'none tried'})")


def main() -> None:
    """Run the benchmark (or, with ``--ref-role``, one side of a bare loop)."""
    if len(sys.argv) > 1 and sys.argv[1] == "--ref-role":
        role, addr = sys.argv[2], sys.argv[3]
        if role in ("req", "dealer"):
            _ref_requester(role, addr, float(sys.argv[4]))
        else:
            _ref_responder(role, addr)
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per 1 x 1 run")
    ap.add_argument("--skip-one", action="store_true", help="only the rate search")
    ap.add_argument("--skip-search", action="store_true", help="only the 1 x 1 part")
    ap.add_argument("--start", type=int, default=200, help="first --rate of the search")
    ap.add_argument("--step", type=float, default=2.0, help="seconds per search step")
    ap.add_argument("--bisect", type=int, default=2, help="halvings after the first fail")
    args = ap.parse_args()
    print(f"libzmq {zmq.zmq_version()}, pyzmq {zmq.__version__}")
    if not args.skip_one:
        with tempfile.TemporaryDirectory() as work:
            _one_by_one(args.trials, args.duration, _build_c_reference(Path(work)))
    if not args.skip_search:
        _search(args.start, args.step, args.bisect)


if __name__ == "__main__":
    main()

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
2. **8 requesters x 2 responders, open loop** (unless ``--skip-search``): per design,
   ``msgbench capacity`` (ramp, then bisect; ``--step`` seconds a step, at most
   ``--budget``) finds the highest ``--rate`` per requester whose round trip p99 (from
   the intended send time) is <= 10 ms, with every reply in time and the requesters on
   schedule; it names the limit (on this shared machine often other load).

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


def _capacity(mode: str, budget: str, step_s: float) -> dict[str, Any]:
    """``msgbench capacity`` at 8 x 2, rpc, p99 <= 10 ms for one mode: its result document
    (the same search and criteria as ``bench_rpc.py``'s for the other designs)."""
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run(
            [sys.executable, "-m", "msgbench", "capacity", "-t", f"zmq --zmq-mode {mode}",
             "-p", "8", "-s", "2", "--size", str(SIZE), "--slo", f"{P99_GOAL_NS // 1_000_000}ms",
             "--start", "200", "--budget", budget, "-d", f"{step_s}s", "-w", "500ms",
             "--no-half", "-o", out, "--pattern", "rpc"],
            capture_output=True, text=True, timeout=RUN_TIMEOUT_S * 2, check=False)
        if proc.returncode != 0:
            return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
        found = sorted(Path(out).glob("*.json"))
        doc: dict[str, Any] = json.loads(found[0].read_text())
        return doc


def _search(budget: str, step_s: float) -> None:
    print(f"8 requesters x 2 responders, open loop, {SIZE} B: msgbench capacity, highest "
          f"--rate per requester with p99 <= {P99_GOAL_NS / 1e6:g} ms, no request without "
          f"its reply in time, requesters on schedule ({step_s:g} s per step)")
    for mode in MODES:
        doc = _capacity(mode, budget, step_s)
        if "error" in doc:
            print(f"  {mode:10} not measured: {doc['error']}", flush=True)
            continue
        rate = doc.get("capacity_rate")
        total = f"{rate * 8:,.0f} requests/s in all" if rate else "none passed"
        print(f"  {mode:10} {rate or 0:8,.0f}/s per requester ({total}); stopped: "
              f"{doc.get('stopped')}; limit: {doc.get('limit') or '-'}", flush=True)


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
    ap.add_argument("--step", type=float, default=2.0, help="seconds per search step")
    ap.add_argument("--budget", default="90s", help="wall time of each design's search")
    args = ap.parse_args()
    print(f"libzmq {zmq.zmq_version()}, pyzmq {zmq.__version__}")
    if not args.skip_one:
        with tempfile.TemporaryDirectory() as work:
            _one_by_one(args.trials, args.duration, _build_c_reference(Path(work)))
    if not args.skip_search:
        _search(args.budget, args.step)


if __name__ == "__main__":
    main()

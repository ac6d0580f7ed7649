"""Task designs doing work: efficiency at saturation, and fairness with one slow worker.

Every task design, 2 producers x 4 workers, 64 B, ``--work fixed:1ms``:

* **efficiency**: open loop at 2 x 1800 tasks/s, 90 % of the 4 x 1000 tasks/s the group
  could do at most (a closed loop would only pile up tasks: a producer flat out outruns
  any worker). Reported: tasks/s over the offered rate; busy, the members' busy time over
  the available worker time (ideally 0.90); and useful / busy, the work the tasks asked
  for (1 ms each) over that busy time. What is missing went to fetching tasks,
  acknowledgements and msgbench's own wake-ups (tens of microseconds a task on this VM:
  the ``task_service`` p50 over 1 ms says how much).
* **fairness**: open loop at 2 x 500 tasks/s (an eighth of what four even workers can do)
  with worker 0 ten times slower (``--slow-worker 0:x10``): per-member shares, Jain's
  index, max/min share, idle-with-backlog seconds and completion p99. Round-robin PUSH
  deals the slow worker a quarter and its queue grows; the load-balancing broker and the
  pulling designs (Redis, inproc) give it what it asks for.

The reference in each trial is the ideal the work sets (4000 tasks/s, busy 100 %), measured
designs side by side in one go. Medians of ``--trials``.

    python3 benchmarks/bench_tasks_work.py [--trials 3] [--duration 3] [--designs ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from typing import Any

DESIGNS = {
    "inproc": ["-t", "inproc"],
    "zmq-pipeline": ["-t", "zmq", "--zmq-mode", "pipeline"],
    "zmq-broker": ["-t", "zmq", "--zmq-mode", "broker"],
    "redis-streams": ["-t", "redis-streams"],
    "redis-list-blmove": ["-t", "redis-list", "--list-mode", "blmove"],
    "rabbitmq": ["-t", "rabbitmq"],
}
PUBS, SUBS, WORK_S = 2, 4, 0.001
EFFICIENCY_RATE = 1800
"""Tasks/s per producer for the efficiency runs: 2 x 1800 is 90 % of four workers' 4000."""
RUN_TIMEOUT_S = 180


def _run(flags: list[str], args: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run(
            [sys.executable, "-m", "msgbench", "run", "--pattern", "tasks", *flags,
             "--pubs", str(PUBS), "--subs", str(SUBS), "--work", "fixed:1ms", *args,
             "--json", "--quiet", "--out", out],
            capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed")
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def efficiency(flags: list[str], seconds: float) -> tuple[float, float, float, float]:
    """Tasks/s over offered, mean utilisation, useful / busy, service p50 (ms) at 90 %."""
    doc = _run(flags, ["--rate", str(EFFICIENCY_RATE), "--duration", f"{seconds}s",
                       "--warmup", "500ms", "--drain-timeout", "5s"])
    g, s = doc["groups"]["g0"], doc["summary"]
    busy = statistics.fmean(g["utilisation"])
    useful = s["deliveries_per_s"] * WORK_S / SUBS
    service = doc["legs"].get("task_service", {}).get("p50", 0) / 1e6
    return (s["deliveries_per_s"] / (PUBS * EFFICIENCY_RATE), busy,
            useful / busy if busy else 0.0, service)


def fairness(flags: list[str], seconds: float) -> dict[str, Any]:
    """The slow-worker run's group figures and completion p99."""
    doc = _run(flags, ["--rate", "500", "--slow-worker", "0:x10", "--duration", f"{seconds}s",
                       "--warmup", "500ms", "--drain-timeout", "10s"])
    g = dict(doc["groups"]["g0"])
    g["p99_ms"] = doc["summary"]["latency_ns"]["p99"] / 1e6
    g["lost"] = doc["summary"]["lost"]
    return g


def main() -> None:
    """Run every design and print the two tables."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per trial")
    ap.add_argument("--designs", default=",".join(DESIGNS))
    args = ap.parse_args()
    names = [n for n in args.designs.split(",") if n]
    unknown = [n for n in names if n not in DESIGNS]
    if unknown:
        raise SystemExit(f"unknown design {unknown[0]!r}: use {', '.join(DESIGNS)}")
    eff: dict[str, list[tuple[float, float, float, float]]] = {n: [] for n in names}
    fair: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for i in range(args.trials):
        for n in names:
            try:
                eff[n].append(efficiency(DESIGNS[n], args.duration))
                fair[n].append(fairness(DESIGNS[n], args.duration))
            except RuntimeError as exc:
                print(f"trial {i + 1} {n}: skipped: {exc}", flush=True)
                continue
            e, f = eff[n][-1], fair[n][-1]
            print(f"trial {i + 1} {n:18} done/offered {e[0]:.2f}, busy {e[1]:.2f}, useful/busy "
                  f"{e[2]:.2f}, service p50 {e[3]:.3f} ms | slow worker: shares {f['shares']} "
                  f"jain {f['jain']:.3f} idle-with-backlog {f['idle_with_backlog_total_s']:.2f}"
                  f" s p99 {f['p99_ms']:.1f} ms", flush=True)
    print(f"\nmedians of {args.trials}, {PUBS} x {SUBS}, fixed:1ms; efficiency at "
          f"{PUBS} x {EFFICIENCY_RATE}/s (busy ideally 0.90), fairness at {PUBS} x 500/s, x10:")
    print(f"  {'design':18} {'done/off':>8} {'busy':>5} {'use/busy':>8} {'svc p50':>8} | "
          f"{'slow share':>10} "
          f"{'jain':>6} {'max/min':>7} {'idle-bl s':>9} {'p99 ms':>8}")
    for n in names:
        if not eff[n]:
            continue
        med = [statistics.median(x[k] for x in eff[n]) for k in range(4)]
        fs = fair[n]
        share = statistics.median(f["shares"][0] / max(1, sum(f["shares"])) for f in fs)
        mm = statistics.median(f["max_min"] or 0 for f in fs)
        print(f"  {n:18} {med[0]:8.2f} {med[1]:5.2f} {med[2]:8.2f} {med[3]:8.3f} | {share:10.2f} "
              f"{statistics.median(f['jain'] for f in fs):6.3f} {mm:7.2f} "
              f"{statistics.median(f['idle_with_backlog_total_s'] for f in fs):9.2f} "
              f"{statistics.median(f['p99_ms'] for f in fs):8.1f}")


if __name__ == "__main__":
    main()

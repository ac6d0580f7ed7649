"""Durable vs plain subscribers: redis-streams against redis pub/sub, with and without churn.

1 -> 8, 64 B, at a fixed rate per publisher (open loop, so both targets get the
same offered load), each configuration ``--trials`` times, interleaved. Prints
the medians of deliveries/s, redis-server CPU seconds per second, p99 latency
and loss (during churn and while connected). The 2-core machine is shared and
noisy: compare figures measured in one go only.

    python3 benchmarks/bench_durable.py [--trials 3] [--rate 50k] [--duration 4s]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from typing import Any

CHURN = "500ms/2s"
CONFIGS = (
    ("redis", None),
    ("redis", CHURN),
    ("redis-streams", None),
    ("redis-streams", CHURN),
)


def _run(target: str, churn: str | None, rate: str, duration: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        argv = [sys.executable, "-m", "msgbench", "run", "--target", target, "--pubs", "1",
                "--subs", "8", "--size", "64", "--rate", rate, "--duration", duration,
                "--warmup", "1s", "--json", "--quiet", "--out", out]
        if churn:
            argv += ["--churn", churn]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode not in (0,):
        raise SystemExit(f"{target} churn={churn}: exit {proc.returncode}: {proc.stderr.strip()}")
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def _broker_cpu(doc: dict[str, Any]) -> float:
    return float(sum(p["cpu_s"] for p in doc["processes"] if p["role"] == "redis-server"))


def main() -> None:
    """Run the matrix and print the medians."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--rate", default="50k")
    ap.add_argument("--duration", default="4s")
    args = ap.parse_args()
    runs: dict[tuple[str, str | None], list[dict[str, Any]]] = {c: [] for c in CONFIGS}
    for _ in range(args.trials):
        for target, churn in CONFIGS:
            runs[(target, churn)].append(_run(target, churn, args.rate, args.duration))
    print(f"1 -> 8, 64 B, {args.rate}/s per publisher, {args.duration}, median of {args.trials}")
    print(f"{'target':14} {'churn':9} {'deliv/s':>9} {'broker cpu/s':>12} {'p99 ms':>8} "
          f"{'lost':>8} {'in churn':>9} status")
    for (target, churn), docs in runs.items():
        s = [d["summary"] for d in docs]
        dur = s[0]["duration_s"]

        def med(key: str, s: list[dict[str, Any]] = s) -> float:
            return float(statistics.median(x[key] for x in s))

        print(f"{target:14} {churn or '-':9} {med('deliveries_per_s') / 1e3:8.1f}k "
              f"{statistics.median(_broker_cpu(d) for d in docs) / dur:12.2f} "
              f"{statistics.median(x['latency_ns']['p99'] for x in s) / 1e6:8.2f} "
              f"{med('lost'):8.0f} {med('lost_during_churn'):9.0f} "
              f"{','.join(sorted({d['status'] for d in docs}))}")


if __name__ == "__main__":
    main()

"""How long a run takes to end after its server stops: the user's wait, fault to exit.

Starts ``msgbench run`` (2 x 4 at 2k/s, 8 s window), waits until it measures, then 1.5 s in
either SIGSTOPs the run's own server process (``--victim`` matches its command line) or,
with ``--url-server redis``, freezes a proxy in front of a redis-server the script started
and gave to msgbench by URL only (no pid to watch: the progress watchdog's case). Prints,
per trial, the seconds from the fault to the run's exit and the run's first reason; then
min / median / max.

    python benchmarks/bench_fault_exit.py --victim redis-server -- -t redis-list --pattern tasks
    python benchmarks/bench_fault_exit.py --url-server redis -- -t redis-rpc --pattern rpc
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_stall_e2e import FreezingProxy, _port  # noqa: E402  (the tests' proxy)

from msgbench.kit.redis_server import private_server  # noqa: E402

FAULT_AT_S = 1.5
RUN = ["--pubs", "2", "--subs", "4", "--rate", "2k", "-d", "8s", "-w", "500ms",
       "--drain-timeout", "1s", "--json"]


def _trial(args: list[str], env: dict[str, str], fault: Callable[[int], None]) -> tuple[float,
                                                                                       str]:
    with tempfile.TemporaryDirectory() as out:
        argv = [sys.executable, "-m", "msgbench", "run", *args, *RUN, "--out", out]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **env})
        assert proc.stderr is not None
        for line in proc.stderr:
            if "measuring" in line:
                break
        time.sleep(FAULT_AT_S)
        hit = time.monotonic()
        fault(proc.pid)
        stdout, _ = proc.communicate(timeout=60)
        elapsed = time.monotonic() - hit
        reasons = json.loads(stdout)["reasons"] if stdout.strip() else ["(no result)"]
        return elapsed, (reasons or ["(none)"])[0]


class _StopVictim:
    """SIGSTOP the first of the run's descendants whose command line holds ``pattern``."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.stopped: list[psutil.Process] = []

    def __call__(self, pid: int) -> None:
        kids = psutil.Process(pid).children(recursive=True)
        victim = next(k for k in kids if self.pattern in " ".join(k.cmdline()))
        victim.send_signal(signal.SIGSTOP)
        self.stopped.append(victim)


def main() -> int:
    """Run the trials; print each and the summary."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--victim", help="command-line text of the run's server to SIGSTOP")
    ap.add_argument("--url-server", choices=["redis"], help="a server given by URL, behind a "
                    "proxy that freezes")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("run_args", nargs="*", help="msgbench run options (after --)")
    a = ap.parse_args()
    times = []
    for _ in range(a.trials):
        if a.url_server:
            with private_server() as server, FreezingProxy(_port(server.url)) as proxy:
                url = f"redis://127.0.0.1:{proxy.port}/0"
                t, why = _trial(a.run_args, {"MSGBENCH_REDIS_URL": url},
                                lambda _pid: proxy.freeze())
        else:
            fault = _StopVictim(a.victim or "redis-server")
            try:
                t, why = _trial(a.run_args, {}, fault)
            finally:
                for p in fault.stopped:
                    p.send_signal(signal.SIGCONT)
        times.append(t)
        print(f"{t:6.2f} s  {why[:110]}", flush=True)
    print(f"fault -> exit: min {min(times):.2f}  median {statistics.median(times):.2f}  "
          f"max {max(times):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

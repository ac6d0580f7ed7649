"""ServerWatch on a real process: running, stopped past the grace, dead."""

from __future__ import annotations

import signal
import subprocess
import time

from msgbench.run.watch import CHECK_INTERVAL_S, STOPPED_GRACE_S, ServerWatch


def test_stopped_then_dead_server_is_named() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    now = [0.0]
    watch = ServerWatch([("redis-server", proc.pid)], clock=lambda: now[0])
    try:
        assert watch.check() is None
        proc.send_signal(signal.SIGSTOP)
        time.sleep(0.1)  # the kernel marks it stopped
        now[0] += CHECK_INTERVAL_S
        assert watch.check() is None, "a stop shorter than the grace is tolerated"
        now[0] += STOPPED_GRACE_S
        why = watch.check()
        assert why is not None and f"redis-server (pid {proc.pid}) is stopped" in why
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.1)
        now[0] += CHECK_INTERVAL_S
        assert watch.check() is None, "running again"
        proc.kill()
        proc.wait()
        assert watch.check() is None, "between two looks nothing is checked"
        assert watch.check(force=True) == f"redis-server (pid {proc.pid}) died"
    finally:
        proc.kill()
        proc.wait()

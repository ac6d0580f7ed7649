"""``--kill-worker``: the fault a run injects into itself.

At a set time into the measured window the first subscriber worker sends its
totals, then SIGKILLs itself; its members' unfinished tasks are the design's
to deliver again or lose, and the result shows which it did.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from msgbench.api.target import TargetError
from msgbench.run.control import Kill
from msgbench.run.plan import WorkerPlan
from msgbench.run.pool import WorkerHandle
from msgbench.workload.config import RunConfig


def check_victims(config: RunConfig, plans: Sequence[WorkerPlan], colocated: bool) -> None:
    """Raise :class:`TargetError` when ``--kill-worker`` is asked but ``plans`` leave no
    subscriber worker standing after the kill (fewer than two)."""
    if config.kill_worker_s is not None and sum(1 for p in plans if p.subs) < 2:
        raise TargetError("--kill-worker needs at least two subscriber worker processes, so "
                          "that someone is left: give more --subs or --procs"
                          + (f" (target {config.target!r} runs in one process)"
                             if colocated else ""))


def kill_worker(workers: Sequence[WorkerHandle], after_s: float) -> tuple[int, str]:
    """Tell the first subscriber worker of ``workers`` to die; returns when (monotonic ns)
    and the reason the result carries (``after_s``: seconds into the measured window)."""
    victim = next(w for w in workers if w.spec.subs)
    victim.chan.send(Kill())
    killed_at_ns = time.monotonic_ns()
    return killed_at_ns, (f"{victim.spec.describe()} killed on purpose {after_s:g} s into "
                          "the measured window (--kill-worker)")

"""Group clients into worker processes.

Python needs processes for parallelism, but 32 subscribers are not 32
processes on a 2-core machine: by default there are as many workers as cores
(at least two, so publishers and subscribers never compete for one loop), and
the clients are dealt out round-robin within each role.
"""

from __future__ import annotations

from dataclasses import dataclass

from msgbench.workload.config import ConfigError, RunConfig, cpu_count


@dataclass(frozen=True)
class WorkerPlan:
    """The clients one worker hosts."""

    pubs: tuple[int, ...]
    subs: tuple[int, ...]


def plan_workers(config: RunConfig, colocated: bool, cores: int | None = None) -> list[WorkerPlan]:
    """Split ``config``'s clients into workers.

    A colocated target (publishers and subscribers must share memory) gets one
    worker. Otherwise publishers and subscribers get separate workers, their
    number chosen from the core count unless ``config.procs`` says otherwise.
    """
    pubs = tuple(range(config.pubs))
    subs = tuple(range(config.subs))
    if colocated:
        if config.procs not in (None, 1):
            raise ConfigError(f"target {config.target!r} runs in one process; drop --procs")
        return [WorkerPlan(pubs, subs)]
    total = config.procs if config.procs is not None else max(2, cores or cpu_count())
    if total < 2:
        raise ConfigError("--procs must be at least 2: publishers and subscribers run apart")
    pub_procs = max(1, min(config.pubs, total // 2))
    sub_procs = max(1, min(config.subs, total - pub_procs))
    plans = [WorkerPlan(pubs[i::pub_procs], ()) for i in range(pub_procs)]
    plans += [WorkerPlan((), subs[i::sub_procs]) for i in range(sub_procs)]
    return plans

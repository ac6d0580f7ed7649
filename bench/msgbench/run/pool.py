"""The worker processes of a run: spawning, watching, and stopping them.

Every wait on workers goes through :meth:`WorkerPool.pump`, which watches
both the control pipes and the process sentinels, so a worker that dies is
noticed at once and one that goes silent within :data:`WORKER_SILENCE_S`.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

from msgbench.run.control import Message, PipeChannel, Stop
from msgbench.run.plan import WorkerPlan
from msgbench.run.worker import WorkerSpec, worker_main

WORKER_SILENCE_S = 5.0
STOP_TIMEOUT_S = 5.0
JOIN_TIMEOUT_S = 2.0
HURRY_JOIN_S = 0.3
"""How long a failed run waits for a worker that sent its Done to exit by itself."""
POLL_S = 0.05


class RunAborted(Exception):
    """The run cannot go on; ``str(exc)`` says why in one line."""


@dataclass
class WorkerHandle:
    """The coordinator's view of one worker process."""

    spec: WorkerSpec
    process: BaseProcess
    chan: PipeChannel
    last_heard: float
    ready: bool = False
    probe_complete: bool = False
    probe_missing: list[list[int | str]] = field(default_factory=list)
    probe_heard: dict[str, list[int]] = field(default_factory=dict)
    pub_done: bool = False
    done: bool = False
    """Its Done (final totals) arrived."""
    gone: bool = False
    """Its control pipe closed: nothing more will come, Done or not."""
    hung: bool = False


Handler = Callable[[WorkerHandle, Message, bool], None]
"""Called for each message: (worker, message, tolerate). It may raise :class:`RunAborted`
unless ``tolerate`` is set (during shutdown, when failures are only noted)."""


class WorkerPool:
    """Spawns workers and relays what they say to a handler."""

    def __init__(self) -> None:
        self.workers: list[WorkerHandle] = []

    def spawn(
        self, config: dict[str, Any], endpoint: dict[str, Any], plans: Iterable[WorkerPlan]
    ) -> list[WorkerHandle]:
        """Start one process per plan (``spawn`` start method: no inherited state)."""
        ctx = multiprocessing.get_context("spawn")
        for i, plan in enumerate(plans):
            spec = WorkerSpec(i, config, endpoint, plan.pubs, plan.subs)
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=worker_main,
                args=(spec.to_json(), child),
                name=f"msgbench-worker-{i}",
                daemon=True,
            )
            proc.start()
            child.close()
            self.workers.append(WorkerHandle(spec, proc, PipeChannel(parent), time.monotonic()))
        return self.workers

    def broadcast(self, msg: Message) -> None:
        """Send ``msg`` to every live worker."""
        for w in self.workers:
            if w.process.is_alive():
                with contextlib.suppress(OSError):
                    w.chan.send(msg)

    def pump(
        self, timeout: float, handle: Handler, tolerate: bool = False, watch_heartbeat: bool = False
    ) -> None:
        """Handle every message or process exit within ``timeout`` seconds.

        Raises :class:`RunAborted` for a dead or (with ``watch_heartbeat``) silent
        worker, unless ``tolerate``.
        """
        live = [w for w in self.workers if not w.done and not w.gone]
        by_obj: dict[Any, WorkerHandle] = {}
        for w in live:
            by_obj[w.chan.conn] = w
            by_obj[w.process.sentinel] = w
        for obj in wait(list(by_obj), timeout):
            w = by_obj[obj]
            if obj is w.chan.conn:
                self._read(w, handle, tolerate)
            elif not w.done:
                self._read(w, handle, tolerate)
                if not w.done and not tolerate:
                    raise RunAborted(self.death(w))
                w.gone = True
        if watch_heartbeat and not tolerate:
            now = time.monotonic()
            for w in live:
                if not w.done and now - w.last_heard > WORKER_SILENCE_S:
                    w.hung = True
                    raise RunAborted(
                        f"{w.spec.describe()} sent nothing for {WORKER_SILENCE_S:.0f} s (hung?)"
                    )

    def _read(self, w: WorkerHandle, handle: Handler, tolerate: bool) -> None:
        try:
            while not w.done and w.chan.poll():
                msg = w.chan.recv()
                w.last_heard = time.monotonic()
                handle(w, msg, tolerate)
        except (EOFError, OSError):
            if not tolerate and not w.done:
                raise RunAborted(self.death(w)) from None
            w.gone = True

    @staticmethod
    def death(w: WorkerHandle) -> str:
        """Why ``w`` is gone, in one line: exit code or the signal that killed it."""
        w.process.join(JOIN_TIMEOUT_S)
        code = w.process.exitcode
        if code is None:
            return f"{w.spec.describe()} closed its control pipe but is still running"
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        return f"{w.spec.describe()} exited unexpectedly ({how})"

    def shutdown(self, handle: Handler, hurry: bool = False) -> list[str]:
        """Ask every worker to stop, wait for its Done, then terminate and kill what is left.

        A worker that sent its Done is given time to close its connections, :data:`
        JOIN_TIMEOUT_S` for all of them; with ``hurry`` (the run failed: its server may be
        stopped, and no close would be answered) only :data:`HURRY_JOIN_S`, since nothing
        measured is left in it. Returns notes for the result (workers that had to be killed).
        """
        notes = []
        for w in self.workers:
            if w.hung:  # it will not answer; do not make the user wait for it
                w.process.kill()
        self.broadcast(Stop())
        deadline = time.monotonic() + STOP_TIMEOUT_S
        with contextlib.suppress(KeyboardInterrupt):
            while any(not w.done and not w.gone and not w.hung and w.process.is_alive()
                      for w in self.workers):
                if time.monotonic() >= deadline:
                    notes.append("some workers did not stop in time and were killed")
                    break
                self.pump(POLL_S, handle, tolerate=True)
        # one grace for all: a worker that sent its Done is closing its connections, and
        # against a stopped server each would use its whole close timeout; waiting for the
        # workers one after another made the user wait that long per worker
        grace_end = time.monotonic() + (HURRY_JOIN_S if hurry else JOIN_TIMEOUT_S)
        for w in self.workers:
            w.process.join(max(0.0, grace_end - time.monotonic()) if w.done else 0)
        for w in self.workers:
            if w.process.is_alive():
                w.process.terminate()
                w.process.join(JOIN_TIMEOUT_S)
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
            w.chan.close()
        notes += [f"{w.spec.describe()} ended without its final totals ({self.death(w)}): "
                  "per-subscriber figures of its subscribers are missing"
                  for w in self.workers if not w.done and w.spec.subs]
        return notes

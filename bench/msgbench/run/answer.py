"""The driver's side of a responder: what it answers with.

:class:`Answerer` answers each request with the request's header flagged as a reply,
stamped with the responder's id and its receive and reply times, after the request's
``--work`` (the requests of a batch one after another, waited out on the loop's pacer: see
:mod:`msgbench.run.worktimer`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from msgbench.api.target import Service
from msgbench.run.worktimer import WorkTimer
from msgbench.workload.envelope import ReplyStamp, make_reply
from msgbench.workload.work import Work


class Answerer(Service):
    """A responder's service (see the module docstring)."""

    def __init__(self, resp_id: int, work: Work | None = None) -> None:
        self.resp_id = resp_id
        self.answered = 0
        self._work = work or Work()
        self._rng = np.random.default_rng(resp_id)
        self._timer = WorkTimer()

    async def answer(self, requests: Sequence[bytes]) -> list[bytes]:
        """Replies to ``requests`` (see :class:`Service`)."""
        got = time.monotonic_ns()
        work_ns = int(self._work.sample_ns(len(requests), self._rng).sum())
        if work_ns:
            await self._timer.until(got + work_ns)
        stamp = ReplyStamp(self.resp_id, got, time.monotonic_ns())
        self.answered += len(requests)
        return [make_reply(r, stamp) for r in requests]

    def totals(self) -> dict[str, int | str]:
        """Final counts for the Done message."""
        return {"sub": self.resp_id, "role": "responder", "answered": self.answered}

    def close(self) -> None:
        """Give back the work timer's pacer."""
        self._timer.close()

"""The worker driven through an in-memory control channel, without a coordinator process."""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Callable
from typing import TypeVar

import uvloop

from msgbench.run.control import (
    Done,
    Message,
    Probe,
    ProbeStatus,
    PubDone,
    Ready,
    Report,
    Start,
    Stop,
)
from msgbench.run.worker import Worker, WorkerSpec
from msgbench.workload.config import RunConfig

T = TypeVar("T")
NS = 1_000_000_000
DEADLINE_S = 10.0


class FakeChannel:
    """A Channel whose other end is this test; a pipe byte per message makes it selectable."""

    def __init__(self) -> None:
        self.to_worker: deque[Message] = deque()
        self.from_worker: list[Message] = []
        self._r, self._w = os.pipe()

    def push(self, msg: Message) -> None:
        self.to_worker.append(msg)
        os.write(self._w, b"x")

    def send(self, msg: Message) -> None:
        self.from_worker.append(msg)

    def recv(self) -> Message:
        os.read(self._r, 1)
        return self.to_worker.popleft()

    def poll(self, timeout: float = 0.0) -> bool:
        return bool(self.to_worker)

    def fileno(self) -> int:
        return self._r

    def of_type(self, cls: type[T]) -> list[T]:
        return [m for m in self.from_worker if isinstance(m, cls)]


async def _until(chan: FakeChannel, cond: Callable[[], object]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not cond():
        assert time.monotonic() < deadline, f"timed out; got {chan.from_worker[-3:]}"
        await asyncio.sleep(0.01)


async def _drive(chan: FakeChannel, worker: Worker) -> None:
    task = asyncio.ensure_future(worker.run())
    await _until(chan, lambda: chan.of_type(Ready))
    chan.push(Probe())
    await _until(chan, lambda: any(m.complete for m in chan.of_type(ProbeStatus)))
    now = time.monotonic_ns()
    chan.push(Start(now, now + NS // 10, now + NS // 2))
    await _until(chan, lambda: chan.of_type(PubDone))
    await asyncio.sleep(0.1)
    chan.push(Stop())
    await asyncio.wait_for(task, DEADLINE_S)


def test_worker_walks_the_phases_and_accounts_everything() -> None:
    cfg = RunConfig(pubs=1, subs=3, rate=2000.0, duration_s=0.4, warmup_s=0.1)
    spec = WorkerSpec(0, cfg.to_json(), {}, pubs=(0,), subs=(0, 1, 2))
    chan = FakeChannel()
    uvloop.run(_drive(chan, Worker(spec, chan)))
    (ready,) = chan.of_type(Ready)
    assert ready.subscribed == 3
    (pubdone,) = chan.of_type(PubDone)
    published = sum(n for _, _, n in pubdone.published)
    assert published == 800  # 2000/s for 0.4 s, open loop: exact
    reports = chan.of_type(Report)
    assert sum(r.counters["delivered"] for r in reports) == 3 * published
    assert sum(r.counters["published"] for r in reports) == published
    (done,) = chan.of_type(Done)
    assert [s["delivered"] for s in done.subscribers] == [800, 800, 800]
    assert chan.from_worker[-1] == done, "Done is the last word"

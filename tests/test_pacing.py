"""The open-loop send loop and its pacers.

The schedule and the send loop run against a fake clock (no real time, so no timing
assertion can flake): each message must be handed over at its own intended time when
sends keep up, and a batch may only hold messages already due. The real timerfd pacer is
checked for what it promises (never early, waiters woken in order, shared and closed
cleanly), not for how precise it is: that is ``benchmarks/bench_pacing.py``'s job.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Sequence

import pytest

from msgbench.api.target import Publisher
from msgbench.run import pacer as pacer_mod
from msgbench.run.pacer import SleepPacer, TimerfdPacer, acquire_pacer, release_pacer
from msgbench.run.publisher import PublisherRunner
from msgbench.run.sink import Buffers
from msgbench.workload.config import RunConfig
from msgbench.workload.envelope import HEADER, Kind

NS = 1_000_000_000
PR_GET_TIMERSLACK = 30


class FakeClock:
    """A pacer on made-up time: a wait returns ``late_ns`` after its target."""

    def __init__(self, start_ns: int = 10 * NS, late_ns: int = 0) -> None:
        self.t = start_ns
        self.late_ns = late_ns
        self.waits: list[int] = []

    def now_ns(self) -> int:
        return self.t

    async def wait_until(self, t_ns: int) -> None:
        self.waits.append(t_ns)
        self.t = max(self.t, t_ns + self.late_ns)
        await asyncio.sleep(0)

    def close(self) -> None:
        pass


class RecordingPublisher(Publisher):
    """Decodes every header it is handed; each call costs ``cost_ns`` per message of fake time."""

    def __init__(self, clock: FakeClock, size: int, cost_ns: int = 0) -> None:
        self.clock = clock
        self.size = size
        self.cost_ns = cost_ns
        self.calls: list[tuple[int, list[tuple[int, ...]]]] = []
        """(fake time of the call, headers) per publish call."""

    async def publish(self, topic: str, payloads: Sequence[bytes]) -> None:
        self.calls.append((self.clock.t, [HEADER.unpack_from(p) for p in payloads]))
        self.clock.t += self.cost_ns * len(payloads)

    async def publish_block(self, topic: str, block: bytes, count: int, size: int) -> None:
        await self.publish(topic, [block[i * size:(i + 1) * size] for i in range(count)])


def _run(rate: float, cost_ns: int = 0, late_ns: int = 0, warmup_s: float = 0.01,
         duration_s: float = 0.05) -> tuple[FakeClock, RecordingPublisher, PublisherRunner,
                                            Buffers, int, int]:
    clock = FakeClock(late_ns=late_ns)
    config = RunConfig(rate=rate, warmup_s=warmup_s, duration_s=duration_s)
    pub = RecordingPublisher(clock, config.size, cost_ns)
    buffers = Buffers()
    runner = PublisherRunner(0, pub, config, buffers, pacer=clock)
    start = clock.t + 1000
    m_start = start + int(warmup_s * NS)
    m_end = m_start + int(duration_s * NS)
    asyncio.run(runner.run(start, m_start, m_end))
    return clock, pub, runner, buffers, start, m_start


@pytest.mark.parametrize("rate", [1_000.0, 10_000.0, 20_000.0, 333.3])
def test_each_message_leaves_at_its_own_intended_time(rate: float) -> None:
    _, pub, runner, buffers, start, m_start = _run(rate)
    assert all(len(headers) == 1 for _, headers in pub.calls)
    for at, [(kind, _, _, seq, intended, sent)] in pub.calls:
        assert intended == sent == at
        assert intended == start + int(seq * NS / rate)
        assert kind == (Kind.WARMUP if intended < m_start else Kind.MEASURE)
    assert sum(runner.measured) == len([c for c in pub.calls if c[1][0][0] == Kind.MEASURE])
    assert list(buffers.publish_delay) == [0] * sum(runner.measured)


def test_a_late_timer_shows_as_publish_delay_not_as_a_shifted_schedule() -> None:
    _, pub, _, buffers, start, _ = _run(1_000.0, late_ns=3_000)
    assert all(len(h) == 1 for _, h in pub.calls)
    for _, [(_, _, _, seq, intended, sent)] in pub.calls:
        assert intended == start + seq * 1_000_000  # from the start, never from "now"
        assert sent - intended == 3_000
    assert set(buffers.publish_delay) == {3_000}


@pytest.mark.parametrize("cost_ns", [15_000, 25_000, 80_000])
def test_batches_hold_only_what_is_due(cost_ns: int) -> None:
    """Sends slower than the rate (10 us apart): batches, each of messages already due."""
    rate = 100_000.0
    _, pub, runner, buffers, _, _ = _run(rate, cost_ns=cost_ns, duration_s=0.005,
                                              warmup_s=0.001)
    seqs = [h[3] for _, headers in pub.calls for h in headers]
    assert seqs == list(range(len(seqs)))  # each once, in order
    assert max(len(h) for _, h in pub.calls) > 1
    for at, headers in pub.calls:
        for _, _, _, _, intended, sent in headers:
            assert sent == at and intended <= sent
    # Everything due at a call went out in it: the next call starts with a message that was
    # not yet due, unless the batch was full or stopped where the measured window begins.
    calls = pub.calls
    for (at, headers), (_, nxt) in itertools.pairwise(calls):
        assert (nxt[0][4] > at or len(headers) == runner.batch
                or headers[-1][0] != nxt[0][0])
    assert len(buffers.publish_delay) == sum(runner.measured)


def test_on_schedule_every_wait_is_for_the_next_message() -> None:
    clock, pub, _, _, _, _ = _run(2_000.0)
    sent = [h[4] for _, headers in pub.calls for h in headers]
    # one wait per message, for exactly its intended time (the first is due at the start)
    assert clock.waits == sent


def test_sleep_pacer_never_returns_early() -> None:
    async def go() -> list[int]:
        p = SleepPacer()
        out = []
        for k in range(3):
            target = time.monotonic_ns() + (k + 1) * 200_000
            await p.wait_until(target)
            out.append(time.monotonic_ns() - target)
        return out

    assert min(asyncio.run(go())) >= 0


@pytest.mark.parametrize("max_lead_ns", [0, pacer_mod.MAX_LEAD_NS])
def test_timerfd_pacer_wakes_waiters_in_order_and_never_early(max_lead_ns: int) -> None:
    async def go() -> list[tuple[int, int]]:
        p = TimerfdPacer(max_lead_ns=max_lead_ns)
        woke: list[tuple[int, int]] = []

        async def waiter(t: int) -> None:
            await p.wait_until(t)
            woke.append((t, time.monotonic_ns()))

        base = time.monotonic_ns() + 2_000_000
        targets = [base + k * 300_000 for k in (3, 0, 2, 1, 1)]
        await asyncio.gather(*(waiter(t) for t in targets))
        await p.wait_until(time.monotonic_ns() - 5)  # in the past: returns at once
        p.close()
        return woke

    woke = asyncio.run(go())
    assert sorted(t for t, _ in woke) == [t for t, _ in woke]
    assert all(at >= t for t, at in woke)


def test_a_cancelled_wait_does_not_disturb_the_others() -> None:
    async def go() -> bool:
        p = TimerfdPacer()
        soon = time.monotonic_ns() + 1_000_000
        first = asyncio.ensure_future(p.wait_until(soon))
        later = asyncio.ensure_future(p.wait_until(soon + 1_000_000))
        await asyncio.sleep(0)
        first.cancel()
        await later
        ok = time.monotonic_ns() >= soon + 1_000_000
        p.close()
        return ok

    assert asyncio.run(go())


def test_one_shared_pacer_per_loop_closed_by_its_last_user() -> None:
    async def go() -> None:
        a = acquire_pacer()
        b = acquire_pacer()
        assert a is b
        release_pacer(a)
        await b.wait_until(time.monotonic_ns() + 100_000)  # still usable
        release_pacer(b)
        c = acquire_pacer()
        assert c is not a
        release_pacer(c)

    asyncio.run(go())
    assert not pacer_mod._shared


def test_timer_slack_is_lowered_for_the_calling_thread() -> None:
    def slack() -> int:
        return int(pacer_mod._get_libc().prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0))

    out: list[int] = []

    def body() -> None:
        assert pacer_mod.lower_timer_slack()
        out.append(slack())

    before = slack()
    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert out == [pacer_mod.TIMER_SLACK_NS]
    assert slack() == before  # per thread: this one keeps its own


class CountingPublisher(Publisher):
    """Keeps each header it is handed, with the real time of the call."""

    def __init__(self) -> None:
        self.headers: list[tuple[int, ...]] = []

    async def publish(self, topic: str, payloads: Sequence[bytes]) -> None:
        self.headers.extend(HEADER.unpack_from(p) for p in payloads)

    async def publish_block(self, topic: str, block: bytes, count: int, size: int) -> None:
        await self.publish(topic, [block[i * size:(i + 1) * size] for i in range(count)])


def test_publishers_sharing_the_loops_pacer_send_every_message_once_never_early() -> None:
    """Four publishers on one real timerfd pacer (what a worker does): exact counts."""
    rate, warmup_s, duration_s = 2_000.0, 0.05, 0.2
    config = RunConfig(rate=rate, pubs=4, warmup_s=warmup_s, duration_s=duration_s)
    pubs = [CountingPublisher() for _ in range(4)]
    buffers = Buffers()
    runners = [PublisherRunner(i, p, config, buffers) for i, p in enumerate(pubs)]

    async def go() -> None:
        start = time.monotonic_ns() + NS // 100
        m_start = start + int(warmup_s * NS)
        await asyncio.gather(*(r.run(start, m_start, m_start + int(duration_s * NS))
                               for r in runners))

    asyncio.run(go())
    for r, p in zip(runners, pubs, strict=True):
        assert [h[3] for h in p.headers] == list(range(len(p.headers)))
        assert all(sent >= intended for *_, intended, sent in p.headers)
        assert sum(r.measured) == int(rate * duration_s)
    assert len(buffers.publish_delay) == 4 * int(rate * duration_s)
    assert min(buffers.publish_delay) >= 0
    assert not pacer_mod._shared  # released by the last publisher


@pytest.mark.parametrize(("max_lead_ns", "budget"), [(0, 0.25), (pacer_mod.MAX_LEAD_NS, 0.0)])
def test_spinning_stays_within_its_lead_and_budget(max_lead_ns: int, budget: float) -> None:
    async def go() -> tuple[int, int]:
        p = TimerfdPacer(max_lead_ns=max_lead_ns, spin_budget=budget)
        for _ in range(20):
            await p.wait_until(time.monotonic_ns() + 300_000)
        p.close()
        return p.spun_ns, p.lead_ns()

    spun, lead = asyncio.run(go())
    if max_lead_ns == 0:
        assert spun == 0 and lead == 0  # no lead: never a spin
    else:
        assert spun == 0 or lead == 0  # no budget: once it has spun, it arms on time

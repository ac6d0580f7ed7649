"""Speed check of RabbitMQ tasks and request/reply, next to bare aiormq loops in the same run.

One private RabbitMQ node serves the whole script (msgbench runs reach it through
``$MSGBENCH_AMQP_URL``; the broker's CPU in their measured window is read from outside,
as ``bench_rabbitmq.py`` does), so every figure comes from the same broker.

* **tasks**, 2 producers x 4 workers, 64 B, zero work, for ``--amqp-ack each``,
  ``multi:250`` and ``auto``: ``msgbench run --pattern tasks``, a bare aiormq loop
  (2 producer processes pacing ``basic_publish`` batches every :data:`TICK_S`, 4 consumer
  processes on one queue, prefetch 1000, the same acks) and a lean bare loop (the same
  processes on msgbench's own framing, :mod:`msgbench.targets.rabbitmq.wire`, without
  the driver: what the broker costs), all at the same offered rate: tasks/s done in the
  measured window and tasks per CPU-second over every process (producers, workers, the
  broker; for msgbench also its coordinator).
* **rpc** 1 x 1, one request in flight, direct reply-to and a reply queue: round trip p50 /
  p99 of msgbench open loop at :data:`RPC_RATE`/s (a round trip ends long before the next
  request is due, so one is in flight), of msgbench closed loop (``--rate max --inflight
  1``), and of a bare aiormq request/reply loop at the same rate (one requester process,
  one responder process, the same reply path). (A driver that stamps a request before
  ``--inflight`` lets it leave, as main did before its commit ae397a5, inflates the closed
  loop's figure by that wait; the open-loop one never had that problem.)

Medians of ``--trials`` interleaved trials. The machine is shared and noisy: only
figures measured in one go compare.

    python3 benchmarks/bench_rabbitmq_tasks.py [--trials 3] [--duration 2s] [--rate 2500]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import time
from typing import Any

import numpy as np
import uvloop
from bench_rabbitmq import _cpu, msgbench_run
from pamqp import commands

from msgbench.kit.amqp_server import PrivateBroker, private_broker
from msgbench.targets.rabbitmq.frames import Shape, publish_block, publish_head, tags_and_flags
from msgbench.targets.rabbitmq.wire import (
    AmqpConnection,
    AmqpUrl,
    Consumer,
    ack_frame,
    connect,
    parse_url,
)

PRODUCERS = 2
WORKERS = 4
SIZE = 64
PREFETCH = 1000
ACKS = ("each", "multi:250", "auto")
TICK_S = 0.002
"""The bare producers' send period: every tick they send what became due."""
SETTLE_S = 1.0
"""Time before the measured window for every process to be running."""
DRAIN_S = 1.0
ACK_IDLE_S = 0.05
"""The bare consumers' idle flush for multi:N, as the target's."""
RPC_RATE = 500
"""Requests/s of the rpc runs: a round trip (well under a millisecond) ends long before
the next request is due, so one is in flight and each is stamped as it leaves."""


# -- the bare tasks loop -----------------------------------------------------------------
async def _producer(url: str, queue: str, rate: float, sync: tuple[Any, Any, Any],
                    seconds: float, out: Any) -> None:
    import aiormq

    conn = await aiormq.connect(url)
    ch = await conn.channel()
    props = aiormq.spec.Basic.Properties(delivery_mode=1)
    start = await _window(sync)
    sent, cpu0 = 0, 0.0
    end = start + seconds
    while (now := time.time()) < end + DRAIN_S / 2:
        if not cpu0 and now >= start:
            cpu0 = time.process_time()
        if now < end:
            due = int((now - (start - SETTLE_S)) * rate) - sent
            if due > 0:
                await asyncio.gather(*(ch.basic_publish(bytes(SIZE), routing_key=queue,
                                                        properties=props)
                                       for _ in range(due)))
                sent += due
        elif cpu0:
            break
        await asyncio.sleep(TICK_S)
    out.put(("producer", time.process_time() - cpu0, 0))
    await conn.close()


async def _window(sync: tuple[Any, Any, Any]) -> float:
    """Say ready, wait for the go; return the measured window's start (wall clock)."""
    ready, go, when = sync
    ready.release()
    while not go.is_set():
        await asyncio.sleep(0.01)
    return float(when.value)


async def _consumer(url: str, queue: str, ack: str, sync: tuple[Any, Any, Any],
                    seconds: float, out: Any) -> None:
    import aiormq

    conn = await aiormq.connect(url)
    ch = await conn.channel()
    every = int(ack.split(":")[1]) if ack.startswith("multi") else 1
    if ack != "auto":
        await ch.basic_qos(prefetch_count=PREFETCH)
    state = {"done": 0, "unacked": 0, "last": 0, "seen": 0.0}
    window = [0.0, 0.0]

    async def on(msg: Any) -> None:
        now = time.time()
        state["seen"] = now
        if window[0] <= now < window[1]:
            state["done"] += 1
        if ack == "each":
            await ch.basic_ack(msg.delivery_tag)
        elif ack != "auto":
            state["unacked"] += 1
            state["last"] = msg.delivery_tag
            if state["unacked"] >= every:
                state["unacked"] = 0
                await ch.basic_ack(msg.delivery_tag, multiple=True)

    await ch.basic_consume(queue, on, no_ack=ack == "auto")
    start = await _window(sync)
    end = start + seconds
    window[:] = [start, end]
    cpu0 = cpu1 = 0.0
    while (now := time.time()) < end + DRAIN_S:
        if not cpu0 and now >= start:
            cpu0 = time.process_time()
        if not cpu1 and now >= end:
            cpu1 = time.process_time()
        if state["unacked"] and now - state["seen"] > ACK_IDLE_S:
            state["unacked"] = 0
            await ch.basic_ack(int(state["last"]), multiple=True)
        await asyncio.sleep(ACK_IDLE_S / 2)
    out.put(("worker", cpu1 - cpu0, state["done"]))
    await conn.close()


# -- the lean bare tasks loop: msgbench's own framing, no driver ------------------------------
class _LeanWorker(Consumer):
    """Counts deliveries of a run in the window and acks them as the ack mode says."""

    def __init__(self, conn: AmqpConnection, ack: str) -> None:
        self.conn = conn
        self.ack = ack
        self.every = int(ack.split(":")[1]) if ack.startswith("multi") else 1
        self.window = (0.0, 0.0)
        self.done = 0
        self.unacked = 0
        self.last = 0
        self.seen = 0.0

    def block(self, buf: bytes, first: int, count: int, shape: Shape) -> None:
        now = time.time()
        self.seen = now
        if self.window[0] <= now < self.window[1]:
            self.done += count
        if self.ack == "auto":
            return
        tags, _ = tags_and_flags(buf, first, count, shape)
        if self.ack == "each":
            self.conn.write(b"".join(ack_frame(int(t), False) for t in tags))
            return
        self.unacked += count
        self.last = int(tags[-1])
        if self.unacked >= self.every:
            self.flush()

    def one(self, body: bytes, tag: int, redelivered: bool = False) -> None:
        raise AssertionError("64 B bodies fit one frame")

    def flush(self) -> None:
        if self.unacked:
            self.conn.write(ack_frame(self.last, True))
        self.unacked = 0


async def _lean_producer(url: AmqpUrl, queue: str, rate: float, sync: tuple[Any, Any, Any],
                         seconds: float, out: Any) -> None:
    conn = await connect(url)
    head = publish_head(1, "", queue, SIZE, commands.Basic.Properties(delivery_mode=1))
    start = await _window(sync)
    sent, cpu0, end = 0, 0.0, start + seconds
    while (now := time.time()) < end:
        if not cpu0 and now >= start:
            cpu0 = time.process_time()
        due = int((now - (start - SETTLE_S)) * rate) - sent
        if due > 0:
            conn.write(publish_block(head, bytes(SIZE * due), due, SIZE))
            sent += due
            await conn.drain()
        await asyncio.sleep(TICK_S)
    out.put(("producer", time.process_time() - cpu0, 0))
    conn.close()


async def _lean_consumer(url: AmqpUrl, queue: str, ack: str, sync: tuple[Any, Any, Any],
                         seconds: float, out: Any) -> None:
    conn = await connect(url)
    worker = _LeanWorker(conn, ack)
    conn.consumer = worker
    if ack != "auto":
        await conn.call(commands.Basic.Qos(prefetch_count=PREFETCH), commands.Basic.QosOk)
    await conn.call(commands.Basic.Consume(queue=queue, consumer_tag="c", no_ack=ack == "auto"),
                    commands.Basic.ConsumeOk)
    start = await _window(sync)
    end = start + seconds
    worker.window = (start, end)
    cpu0 = cpu1 = 0.0
    while (now := time.time()) < end + DRAIN_S:
        if not cpu0 and now >= start:
            cpu0 = time.process_time()
        if not cpu1 and now >= end:
            cpu1 = time.process_time()
        if worker.unacked and now - worker.seen > ACK_IDLE_S:
            worker.flush()
        await asyncio.sleep(ACK_IDLE_S / 2)
    out.put(("worker", cpu1 - cpu0, worker.done))
    conn.close()


def _lean_producer_main(*args: Any) -> None:
    uvloop.run(_lean_producer(*args))


def _lean_consumer_main(*args: Any) -> None:
    uvloop.run(_lean_consumer(*args))


def _producer_main(*args: Any) -> None:
    uvloop.run(_producer(*args))


def _consumer_main(*args: Any) -> None:
    uvloop.run(_consumer(*args))


async def _declare(url: str, queue: str, delete: bool = False) -> None:
    import aiormq

    conn = await aiormq.connect(url)
    ch = await conn.channel()
    if delete:
        await ch.queue_delete(queue)
    else:
        await ch.queue_declare(queue)
    await conn.close()


def bare_tasks(broker: PrivateBroker, ack: str, rate: float, seconds: float,
               name: str, lean: bool = False) -> tuple[float, float]:
    """(tasks/s, tasks per CPU-second) of the bare aiormq work queue, or with ``lean`` of
    the same loop on msgbench's own framing (:mod:`msgbench.targets.rabbitmq.wire`)."""
    queue = f"bench.tasks.{name}"
    uvloop.run(_declare(broker.url, queue))
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    sync = (ctx.Semaphore(0), ctx.Event(), ctx.Value("d", 0.0))
    url: Any = parse_url(broker.url) if lean else broker.url
    consumer, producer = ((_lean_consumer_main, _lean_producer_main) if lean
                          else (_consumer_main, _producer_main))
    procs = [ctx.Process(target=consumer, args=(url, queue, ack, sync, seconds, out))
             for _ in range(WORKERS)]
    procs += [ctx.Process(target=producer, args=(url, queue, rate, sync, seconds, out))
              for _ in range(PRODUCERS)]
    for p in procs:
        p.start()
    for _ in procs:  # every process connected (and consuming) before the clock starts
        sync[0].acquire(timeout=60)
    start = time.time() + SETTLE_S
    sync[2].value = start
    sync[1].set()
    time.sleep(max(0.0, start - time.time()))
    b0 = _cpu(broker.pid)
    time.sleep(seconds)
    b1 = _cpu(broker.pid)
    got = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
    uvloop.run(_declare(broker.url, queue, delete=True))
    done = sum(n for _, _, n in got)
    cpu = sum(c for _, c, _ in got) + (b1 - b0)
    return done / seconds, done / cpu if cpu > 0 else float("nan")


def msgbench_tasks(broker: PrivateBroker, ack: str, rate: float, duration: str
                   ) -> tuple[float, float]:
    """(tasks/s, tasks per CPU-second incl. the broker) of ``msgbench run --pattern tasks``."""
    doc = msgbench_run(broker, PRODUCERS, WORKERS, duration, f"{rate:g}",
                       ("--pattern", "tasks", "--amqp-ack", ack, "--amqp-prefetch",
                        str(PREFETCH)))
    s = doc["summary"]
    if doc["status"] != "ok" or s["lost"] or s["duplicated"]:
        print(f"  (msgbench tasks run {doc['status']}: {doc['reasons']})", flush=True)
    done = float(s["deliveries_per_s"]) * float(s["duration_s"])
    cpu = float(s["cpu_s"]) + float(doc.get("_broker_cpu_window", float("nan")))
    return float(s["deliveries_per_s"]), done / cpu if cpu > 0 else float("nan")


# -- the bare request/reply loop -----------------------------------------------------------
async def _responder(url: str, queue: str, ready: Any, stop: Any) -> None:
    import aiormq

    conn = await aiormq.connect(url)
    ch = await conn.channel()
    await ch.basic_qos(prefetch_count=PREFETCH)
    await ch.queue_declare(queue, auto_delete=True)

    async def on(msg: Any) -> None:
        await ch.basic_publish(msg.body, routing_key=msg.header.properties.reply_to)
        await ch.basic_ack(msg.delivery_tag)

    await ch.basic_consume(queue, on)
    ready.set()
    while not stop.is_set():
        await asyncio.sleep(0.05)
    await conn.close()


def _responder_main(*args: Any) -> None:
    uvloop.run(_responder(*args))


async def _requester(url: str, queue: str, reply: str, seconds: float) -> list[float]:
    import aiormq

    conn = await aiormq.connect(url)
    ch = await conn.channel()
    waiting: list[asyncio.Future[None]] = []

    async def on(msg: Any) -> None:
        if waiting and not waiting[0].done():
            waiting[0].set_result(None)

    if reply == "direct":
        reply_to = "amq.rabbitmq.reply-to"
    else:
        reply_to = str((await ch.queue_declare("", exclusive=True, auto_delete=True)).queue)
    await ch.basic_consume(reply_to, on, no_ack=True)
    props = aiormq.spec.Basic.Properties(reply_to=reply_to)
    loop = asyncio.get_running_loop()
    rtts: list[float] = []
    t_start = time.perf_counter()
    i = 0
    while (now := time.perf_counter()) < t_start + SETTLE_S + seconds:
        due = t_start + i / RPC_RATE
        if due > now:
            await asyncio.sleep(due - now)
        i += 1
        waiting[:] = [loop.create_future()]
        sent = time.perf_counter()
        await ch.basic_publish(bytes(SIZE), routing_key=queue, properties=props)
        await waiting[0]
        if sent - t_start >= SETTLE_S:
            rtts.append(time.perf_counter() - sent)
    await conn.close()
    return rtts


def bare_rpc(broker: PrivateBroker, reply: str, seconds: float, name: str
             ) -> tuple[float, float]:
    """(p50, p99) round trip in ms of the bare aiormq request/reply loop."""
    queue = f"bench.rpc.{name}"
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_responder_main, args=(broker.url, queue, ready, stop))
    p.start()
    ready.wait(30)
    rtts = uvloop.run(_requester(broker.url, queue, reply, seconds))
    stop.set()
    p.join(10)
    p50, p99 = np.percentile(np.array(rtts) * 1e3, [50, 99])
    return float(p50), float(p99)


def msgbench_rpc(broker: PrivateBroker, reply: str, duration: str, closed: bool = False
                 ) -> tuple[float, float]:
    """(p50, p99) round trip in ms of ``msgbench run --pattern rpc`` 1 x 1, one in flight:
    open loop at :data:`RPC_RATE`, or with ``closed`` ``--rate max --inflight 1``."""
    rate, extra = ("max", ("--inflight", "1")) if closed else (str(RPC_RATE), ())
    doc = msgbench_run(broker, 1, 1, duration, rate,
                       ("--pattern", "rpc", "--amqp-reply", reply, *extra))
    s = doc["summary"]
    if doc["status"] != "ok":
        print(f"  (msgbench rpc run {doc['status']}: {doc['reasons']})", flush=True)
    lat = s["latency_ns"]
    return lat["p50"] / 1e6, lat["p99"] / 1e6


def _med(xs: list[tuple[float, float]]) -> tuple[float, float]:
    a, b = zip(*xs, strict=True)
    return statistics.median(a), statistics.median(b)


def main() -> None:
    """Parse the arguments, start the broker, run the interleaved trials."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--duration", default="2s", help="seconds per trial, e.g. 2s")
    ap.add_argument("--rate", type=float, default=2500, help="tasks/s per producer")
    ap.add_argument("--only", choices=("tasks", "rpc"))
    args = ap.parse_args()
    seconds = float(args.duration.rstrip("s"))
    figs: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    with private_broker() as broker:
        print(f"private RabbitMQ node up in {broker.startup_s:.1f} s "
              f"({broker.settings['scheduler_busy_wait']})", flush=True)
        for k in range(args.trials):
            if args.only in (None, "tasks"):
                for ack in ACKS:
                    for side in ("bare", "lean", "msgbench"):
                        fig = (msgbench_tasks(broker, ack, args.rate, args.duration)
                               if side == "msgbench" else
                               bare_tasks(broker, ack, args.rate, seconds, f"{k}{side}{ack}",
                                          lean=side == "lean"))
                        figs.setdefault(("tasks", ack, side), []).append(fig)
                        print(f"trial {k + 1} tasks {ack:9} {side:8} {fig[0]:9,.0f} tasks/s "
                              f"{fig[1]:9,.0f} tasks/CPU-s", flush=True)
            if args.only in (None, "rpc"):
                for reply in ("direct", "queue"):
                    for side in ("bare", "msgbench", "msgbench-closed"):
                        fig = (bare_rpc(broker, reply, seconds, f"{k}{reply}")
                               if side == "bare" else msgbench_rpc(
                                   broker, reply, args.duration, side == "msgbench-closed"))
                        figs.setdefault(("rpc", reply, side), []).append(fig)
                        print(f"trial {k + 1} rpc {reply:6} {side:15} p50 {fig[0]:6.3f} ms "
                              f"p99 {fig[1]:6.3f} ms", flush=True)
    print(f"\nmedians of {args.trials} trials of {args.duration}")
    for (kind, mode, side), xs in sorted(figs.items()):
        if side != "msgbench":
            continue
        m, b = _med(xs), _med(figs[(kind, mode, "bare")])
        if kind == "tasks":
            n = _med(figs[(kind, mode, "lean")])
            print(f"tasks {mode:9} {PRODUCERS}x{args.rate:g}/s -> {WORKERS}: bare aiormq "
                  f"{b[0]:7,.0f} tasks/s {b[1]:7,.0f}/CPU-s | lean bare {n[0]:7,.0f} tasks/s "
                  f"{n[1]:7,.0f}/CPU-s | msgbench {m[0]:7,.0f} tasks/s {m[1]:7,.0f}/CPU-s | "
                  f"per-CPU msgbench/aiormq {m[1] / b[1]:.2f}, msgbench/lean {m[1] / n[1]:.2f}")
        else:
            c = _med(figs[(kind, mode, "msgbench-closed")])
            print(f"rpc {mode:6} 1x1 one in flight: bare aiormq p50 {b[0]:.3f} ms p99 "
                  f"{b[1]:.3f} ms | msgbench at {RPC_RATE}/s p50 {m[0]:.3f} ms p99 "
                  f"{m[1]:.3f} ms (p50 ratio {m[0] / b[0]:.2f}) | msgbench --rate max "
                  f"--inflight 1 p50 {c[0]:.3f} ms p99 {c[1]:.3f} ms")


if __name__ == "__main__":
    main()
